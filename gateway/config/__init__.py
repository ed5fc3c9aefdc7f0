"""The manifest (`gateway.yaml`): schema.py (frozen, typed structs), validation.py (every type problem with
its path), checks.py (cross-references the types cannot express), loading.py (YAML in, config out).

Everything is imported from `gateway.config`; the modules import each other in that order only
(schema ← validation, checks ← loading), so there is no loop.
"""

from gateway.config.loading import ConfigError, apply_environment, load_config, parse_config
from gateway.config.schema import (
    ALLOWED_ACTIONS,
    ApiKey,
    AuthConfig,
    ClientProfile,
    DummyArch,
    GatewayConfig,
    ItemRulesConfig,
    MlxModel,
    MlxSettings,
    MlxTesting,
    ModelSpec,
    PolicyConfig,
    Sampling,
    Script,
    ScriptCall,
    ScriptedModel,
    ScriptStep,
    ServerConfig,
    StoreConfig,
    ToolAction,
    ToolRulesConfig,
    UpstreamModel,
)

__all__ = [
    "ALLOWED_ACTIONS",
    "ApiKey",
    "AuthConfig",
    "ClientProfile",
    "ConfigError",
    "DummyArch",
    "GatewayConfig",
    "ItemRulesConfig",
    "MlxModel",
    "MlxSettings",
    "MlxTesting",
    "ModelSpec",
    "PolicyConfig",
    "Sampling",
    "Script",
    "ScriptCall",
    "ScriptStep",
    "ScriptedModel",
    "ServerConfig",
    "StoreConfig",
    "ToolAction",
    "ToolRulesConfig",
    "UpstreamModel",
    "apply_environment",
    "load_config",
    "parse_config",
]
