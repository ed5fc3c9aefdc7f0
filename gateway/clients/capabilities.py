"""What each served model can do, as the gateway will plan it, without starting the gateway.

`gateway clients` runs without a server, so the answer comes from the adapters themselves, built but never
started: a scripted model's `Capabilities` are constants; an mlx model's come from its files (traits.py reads
the tokenizer and chat template without loading weights). When the files cannot tell (an hf: model not
downloaded yet), the mlx adapter assumes tools and thinking until its first load; `known` says so, and the
client configs are written from the same assumption the gateway plans with.
"""

from __future__ import annotations

import msgspec

from gateway.adapters.base import Capabilities
from gateway.config import GatewayConfig, MlxModel, ModelSpec

__all__ = ["Probed", "probe_capabilities"]


class Probed(msgspec.Struct, frozen=True, kw_only=True):
    capabilities: Capabilities
    known: bool  # False: the model's files are not here yet; `capabilities` is what the gateway assumes until a load


def probe_capabilities(config: GatewayConfig) -> dict[str, Probed]:
    """Each served model's capabilities by its canonical name (aliases share their model's)."""
    from gateway.adapters import WorkerPool, build_adapter
    from gateway.adapters.mlx.adapter import ASSUMED

    pool = WorkerPool(config.mlx)  # allowed_paths: a directory the worker would refuse is not read
    found: dict[str, Probed] = {}
    for model in config.models:
        capabilities = build_adapter(model, pool).capabilities  # built, never started: no worker, no weights
        # The mlx adapter hands out the ASSUMED object itself until its files or a load tell.
        found[model.name] = Probed(capabilities=capabilities, known=not _assumed(model, capabilities, ASSUMED))
    return found


def _assumed(model: ModelSpec, capabilities: Capabilities, assumed: Capabilities) -> bool:
    return isinstance(model, MlxModel) and capabilities is assumed
