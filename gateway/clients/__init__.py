"""Client configuration for the served models (`gateway clients`).

configs.py builds Codex's config.toml and model catalog and OpenCode's provider block; capabilities.py says
what each model can do (tools, reasoning, image input) without starting the gateway; install.py merges the
generated settings into the clients' own files (`--install`).
"""

from gateway.clients.capabilities import Probed, probe_capabilities
from gateway.clients.configs import (
    BASE_INSTRUCTIONS,
    ENV_KEY,
    PROVIDER_ID,
    base_url,
    codex_catalog,
    codex_config_toml,
    opencode_config,
)

__all__ = [
    "BASE_INSTRUCTIONS", "ENV_KEY", "PROVIDER_ID", "Probed", "base_url", "codex_catalog", "codex_config_toml",
    "opencode_config", "probe_capabilities",
]
