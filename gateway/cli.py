"""`gateway run | check | models`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from gateway.config import ConfigError, GatewayConfig, load_config

__all__ = ["main"]

DEFAULT_CONFIG = "gateway.yaml"


def _default_config() -> str:
    return os.environ.get("MLXGW_CONFIG", DEFAULT_CONFIG)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Serve local models through the OpenAI Responses API.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the models of a manifest")
    run.add_argument("--config", default=_default_config(), help="manifest path (default: $MLXGW_CONFIG or gateway.yaml)")
    run.add_argument("--host", help="override server.host")
    run.add_argument("--port", type=int, help="override server.port")
    run.add_argument("--log-format", choices=["json", "console", "auto"], default="auto")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    check = commands.add_parser("check", help="validate a manifest and print every problem")
    check.add_argument("--config", default=_default_config())

    models = commands.add_parser("models", help="list the models a manifest serves")
    models.add_argument("--config", default=_default_config())

    pull = commands.add_parser("pull", help="download (hf:) or build (dummy) a model's files before serving it")
    pull.add_argument("name", help="a model name or alias from the manifest")
    pull.add_argument("--config", default=_default_config())

    clients = commands.add_parser("clients", help="print client configuration for the served models")
    clients.add_argument("client", choices=["codex", "opencode"])
    clients.add_argument("--config", default=_default_config())
    clients.add_argument("--base-url", help="the gateway's URL as clients reach it (default: from server.host/port)")
    clients.add_argument("--catalog", help="codex: where to write the model catalog "
                         "(default: $CODEX_HOME/mlx-gateway-models.json, CODEX_HOME defaulting to ~/.codex)")
    clients.add_argument("--chat", action="store_true",
                         help="opencode: use @ai-sdk/openai-compatible (/v1/chat/completions) instead of /v1/responses")
    return parser


def _load(path: str) -> GatewayConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{exc.source}: invalid manifest ({len(exc.problems)} problem(s))", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _check(config: GatewayConfig, path: str) -> int:
    names = ", ".join(config.model_names()) or "none"
    print(f"{path}: ok ({len(config.models)} model(s): {names}; store {config.store.url})")
    return 0


def _models(config: GatewayConfig) -> int:
    rows = [("NAME", "ADAPTER", "ALIASES", "CONTEXT", "POLICY")]
    for model in config.models:
        rows.append(
            (
                model.name,
                model.__struct_config__.tag,  # type: ignore[arg-type]
                ",".join(model.aliases) or "-",
                str(model.context_length),
                model.policy,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _pull(config: GatewayConfig, name: str) -> int:
    """Fetch a model's files into the caches the workers read, with a progress bar (huggingface-hub's)."""
    from pathlib import Path

    from gateway.adapters.mlx.model import LoadError, resolve_source
    from gateway.adapters.mlx.pool import default_cache_dir
    from gateway.config import MlxModel
    from gateway.errors import ModelNotFound
    from gateway.model_lookup import resolve_model

    try:
        model = resolve_model(config, name)
    except ModelNotFound as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    if not isinstance(model, MlxModel):
        print(f"{model.name}: a {model.__struct_config__.tag} model has no files to pull")
        return 0

    def status(stage: str, done: int, total: int) -> None:
        if stage != "downloading":  # downloads draw their own progress bar
            print(f"{model.name}: {stage}", file=sys.stderr)

    try:
        path = resolve_source(model, default_cache_dir(config.mlx), status)
    except LoadError as exc:
        print(f"gateway: {model.name}: {exc}", file=sys.stderr)
        return 1
    print(f"{model.name}: ready at {Path(path)}")
    return 0


def _clients(config: GatewayConfig, args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from gateway.clients import base_url, codex_catalog, codex_config_toml, opencode_config

    url = args.base_url or base_url(config)
    if args.client == "opencode":
        print(json.dumps(opencode_config(config, url, chat=args.chat), indent=2))
        return 0
    codex_home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    catalog = Path(args.catalog) if args.catalog else codex_home / "mlx-gateway-models.json"
    catalog.parent.mkdir(parents=True, exist_ok=True)
    catalog.write_text(json.dumps(codex_catalog(config), indent=2) + "\n")
    print(f"# wrote the model catalog to {catalog}", file=sys.stderr)
    print(codex_config_toml(config, url, str(catalog.resolve())), end="")
    return 0


def _run(config: GatewayConfig, args: argparse.Namespace) -> int:
    import msgspec
    import structlog
    import uvicorn

    from gateway.app import create_app
    from gateway.auth import public_bind_problem, unset_key_variables
    from gateway.log import configure_logging

    server = msgspec.structs.replace(
        config.server,
        host=args.host if args.host is not None else config.server.host,
        port=args.port if args.port is not None else config.server.port,
    )
    config = msgspec.structs.replace(config, server=server)
    configure_logging(args.log_format, args.log_level)  # first: with --log-format json, every line is JSON
    log = structlog.get_logger()
    problem = public_bind_problem(config, server.host)
    if problem is not None:
        log.error("refusing_to_start", reason=problem)
        return 1
    for name in unset_key_variables(config):
        log.warning("api_key_unset", variable=name, message=f"${name} is not set; its API key cannot be used")
    app = create_app(config, manifest_path=args.config)

    class GatewayServer(uvicorn.Server):
        """On SIGTERM/SIGINT: refuse new work, give streams the grace period, then end them with response.failed."""

        async def shutdown(self, sockets: list[Any] | None = None) -> None:
            runtime = getattr(app.state, "runtime", None)
            if runtime is not None:
                runtime.begin_drain(server.shutdown_grace_seconds)
            await super().shutdown(sockets)

    uvicorn_config = uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        log_config=None,
        access_log=False,  # the gateway writes its own canonical line per request
        lifespan="on",
        # Longer than the grace period: by then the gateway has ended every stream with a terminal event.
        timeout_graceful_shutdown=int(server.shutdown_grace_seconds) + 5,
    )
    GatewayServer(uvicorn_config).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = _load(args.config)
    if config is None:
        return 1
    if args.command == "check":
        return _check(config, args.config)
    if args.command == "models":
        return _models(config)
    if args.command == "clients":
        return _clients(config, args)
    if args.command == "pull":
        return _pull(config, args.name)
    return _run(config, args)


if __name__ == "__main__":
    sys.exit(main())
