"""The `upstream` adapter: models served by other servers (another `gateway run`, mlx_lm.server, vLLM, ...)."""

from gateway.adapters.upstream.adapter import UpstreamAdapter

__all__ = ["UpstreamAdapter"]
