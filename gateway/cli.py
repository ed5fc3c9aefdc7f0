"""`gateway run | check | models`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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


def _run(config: GatewayConfig, args: argparse.Namespace) -> int:
    import msgspec
    import uvicorn

    from gateway.app import create_app
    from gateway.log import configure_logging

    server = msgspec.structs.replace(
        config.server,
        host=args.host if args.host is not None else config.server.host,
        port=args.port if args.port is not None else config.server.port,
    )
    config = msgspec.structs.replace(config, server=server)
    configure_logging(args.log_format, args.log_level)
    uvicorn_config = uvicorn.Config(
        create_app(config, manifest_path=args.config),
        host=server.host,
        port=server.port,
        log_config=None,
        access_log=False,  # the gateway writes its own canonical line per request
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    uvicorn.Server(uvicorn_config).run()
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
    return _run(config, args)


if __name__ == "__main__":
    sys.exit(main())
