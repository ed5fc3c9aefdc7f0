"""Client configuration for the served models: Codex's config.toml and model catalog, OpenCode's provider block.

Codex picks its tool set and prompt from a catalog entry per model slug; a slug it
does not know gets fallback metadata without `apply_patch`. The catalog written
here gives every served model (and alias) that can call tools the freeform
`apply_patch` tool, which the gateway's default `wrap` policy turns into a function
a local model can call. What each entry claims (tools, reasoning, image input) is
what the gateway will plan for that model (capabilities.py), never more.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.adapters.base import Capabilities
from gateway.clients.capabilities import Probed, probe_capabilities
from gateway.config import GatewayConfig, ModelSpec

__all__ = [
    "BASE_INSTRUCTIONS", "ENV_KEY", "PROVIDER_ID", "TEXT_ONLY_INSTRUCTIONS", "base_url", "codex_catalog",
    "codex_config_toml", "opencode_config",
]

PROVIDER_ID = "mlxgw"
ENV_KEY = "MLXGW_API_KEY"

BASE_INSTRUCTIONS = """\
You are a coding agent working in the user's project through the tools you are given.

Work in small steps you can check:
- Look before you change anything: list and read the relevant files with the shell tool.
- Edit files with the apply_patch tool. Its input is a patch in this form:
  *** Begin Patch
  *** Add File: path/to/new_file.txt
  +first line of the new file
  *** Update File: path/to/existing_file.py
  @@ a line near the change
   an unchanged line
  -a line to remove
  +a line to add
  *** Delete File: path/to/obsolete_file.txt
  *** End Patch
  Paths are relative to the working directory; every added or changed line starts with + or -, context with a space.
- After a change, run the relevant tests or commands to confirm it works.
- When a command fails, read its output and fix the cause rather than repeating it.
- Keep going until the task is done, then answer with a short summary of what you changed and how you checked it.
"""

TEXT_ONLY_INSTRUCTIONS = """\
You are a coding assistant for the user's project. You cannot call tools or run commands: answer in text.
Show changes to files as complete code blocks or unified diffs with their paths, and say how to check them.
"""

REASONING_LEVELS = [
    {"effort": "low", "description": "Think briefly"},
    {"effort": "medium", "description": "Think when it helps"},
    {"effort": "high", "description": "Think at length"},
]


def base_url(config: GatewayConfig) -> str:
    host = config.server.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"  # a wildcard bind is reached through loopback on the same machine
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.server.port}/v1"


def _output_limit(model: ModelSpec) -> int:
    return model.sampling.max_output_tokens or min(16384, max(1024, model.context_length // 4))


def _modalities(capabilities: Capabilities) -> list[str]:
    return ["text", "image"] if capabilities.vision else ["text"]


def _catalog_entry(slug: str, model: ModelSpec, capabilities: Capabilities, priority: int) -> dict[str, Any]:
    kind = model.kind
    tools, reasoning = capabilities.tool_calling, capabilities.reasoning
    return {
        "slug": slug,
        "display_name": slug,
        "description": f"{model.name} ({kind}) served by mlx-gateway",
        "context_window": model.context_length,
        "max_context_window": model.context_length,
        "auto_compact_token_limit": None,
        # A model without a tool parser gets no tools: the gateway would only turn them into a note.
        "apply_patch_tool_type": "freeform" if tools else None,
        "shell_type": "shell_command" if tools else "disabled",
        "supported_reasoning_levels": REASONING_LEVELS if reasoning else [],
        "default_reasoning_level": "medium" if reasoning else None,
        "supports_reasoning_summaries": reasoning,
        "default_reasoning_summary": "auto" if reasoning else "none",
        "supports_parallel_tool_calls": False,
        "support_verbosity": False,
        "input_modalities": _modalities(capabilities),
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "experimental_supported_tools": [],
        "visibility": "list",
        "supported_in_api": True,
        "priority": priority,
        "base_instructions": BASE_INSTRUCTIONS if tools else TEXT_ONLY_INSTRUCTIONS,
    }


def _probed(config: GatewayConfig, probed: dict[str, Probed] | None) -> dict[str, Probed]:
    return probed if probed is not None else probe_capabilities(config)


def codex_catalog(config: GatewayConfig, probed: dict[str, Probed] | None = None) -> dict[str, Any]:
    """A `model_catalog_json` document: one entry per served name and alias."""
    found = _probed(config, probed)
    entries: list[dict[str, Any]] = []
    for model in config.models:
        for slug in (model.name, *model.aliases):
            entries.append(_catalog_entry(slug, model, found[model.name].capabilities, priority=100 + len(entries)))
    return {"models": entries}


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def codex_config_toml(config: GatewayConfig, url: str, catalog_path: str) -> str:
    first = config.models[0].name if config.models else "MODEL"
    lines = [
        "# Codex CLI configuration for mlx-gateway, for $CODEX_HOME/config.toml (default ~/.codex):",
        "# `gateway clients codex --install` merges it into an existing file (keeping a backup).",
        f"# Codex sends `Authorization: Bearer ${ENV_KEY}`; set it to any non-empty value unless the gateway",
        "# has API keys configured, then use one of those.",
        f"model = {_toml(first)}",
        f"model_provider = {_toml(PROVIDER_ID)}",
        f"model_catalog_json = {_toml(catalog_path)}",
        "",
        f"[model_providers.{PROVIDER_ID}]",
        'name = "mlx-gateway"',
        f"base_url = {_toml(url)}",
        'wire_api = "responses"',
        f"env_key = {_toml(ENV_KEY)}",
        "request_max_retries = 2        # 5xx and connection errors; 4xx are final",
        "stream_max_retries = 2",
        "stream_idle_timeout_ms = 600000 # the gateway sends an event at least every keepalive_seconds",
    ]
    for model in config.models:
        for slug in (model.name, *model.aliases):
            lines += ["", f"[profiles.{_toml(slug)}]", f"model = {_toml(slug)}",
                      f"model_provider = {_toml(PROVIDER_ID)}"]
    return "\n".join(lines) + "\n"


def _opencode_model(slug: str, model: ModelSpec, capabilities: Capabilities) -> dict[str, Any]:
    return {
        "name": slug,
        "tool_call": capabilities.tool_calling,
        "reasoning": capabilities.reasoning,
        "attachment": capabilities.vision,
        "modalities": {"input": _modalities(capabilities), "output": ["text"]},
        "limit": {"context": model.context_length, "output": _output_limit(model)},
    }


def opencode_config(config: GatewayConfig, url: str, *, chat: bool = False,
                    probed: dict[str, Probed] | None = None) -> dict[str, Any]:
    """The provider block for opencode.json (`@ai-sdk/openai` → /v1/responses; `chat` → /v1/chat/completions)."""
    found = _probed(config, probed)
    models = {
        slug: _opencode_model(slug, model, found[model.name].capabilities)
        for model in config.models
        for slug in (model.name, *model.aliases)
    }
    first = config.models[0].name if config.models else "MODEL"
    return {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            PROVIDER_ID: {
                "npm": "@ai-sdk/openai-compatible" if chat else "@ai-sdk/openai",
                "name": "mlx-gateway",
                "options": {"baseURL": url, "apiKey": f"{{env:{ENV_KEY}}}"},
                "models": models,
            }
        },
        "model": f"{PROVIDER_ID}/{first}",
        "small_model": f"{PROVIDER_ID}/{first}",
    }
