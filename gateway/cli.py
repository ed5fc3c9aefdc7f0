"""`gateway run | check | models | pull | clients | init | scan`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, GatewayConfig, load_config

if TYPE_CHECKING:
    from gateway.clients.install import Installed
    from gateway.config import DummyArch

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

    clients = commands.add_parser("clients", help="print (or --install) client configuration for the served models")
    clients.add_argument("client", choices=["codex", "opencode"])
    clients.add_argument("--config", default=_default_config())
    clients.add_argument("--base-url", help="the gateway's URL as clients reach it (default: from server.host/port)")
    clients.add_argument("--catalog", help="codex: where to write the model catalog "
                         "(default: $CODEX_HOME/mlx-gateway-models.json, CODEX_HOME defaulting to ~/.codex)")
    clients.add_argument("--chat", action="store_true",
                         help="opencode only: use @ai-sdk/openai-compatible (/v1/chat/completions) instead of "
                              "/v1/responses (an error with codex, which speaks only /v1/responses to the gateway)")
    clients.add_argument("--install", action="store_true",
                         help="merge into the client's config file instead of printing: codex "
                              "$CODEX_HOME/config.toml, opencode $XDG_CONFIG_HOME/opencode/opencode.json (default "
                              "~/.config); creates it if missing, keeps your other settings, backs up the old file")
    clients.add_argument("--into", metavar="PATH", help="with --install: the config file to merge into")

    init = commands.add_parser("init", help="write a commented starter manifest")
    init.add_argument("path", nargs="?", default=_default_config(),
                      help="where to write it (default: $MLXGW_CONFIG or gateway.yaml)")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")

    scan = commands.add_parser("scan", help="list mlx-lm models on this machine as manifest entries")
    scan.add_argument("dir", nargs="?", help="a directory to search (default: the Hugging Face cache)")
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
                model.kind,
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

    from gateway.adapters.mlx.model import LoadError, resolve_source
    from gateway.adapters.mlx.pool import default_cache_dir
    from gateway.config import DummyArch, MlxModel
    from gateway.errors import ModelNotFound
    from gateway.model_lookup import resolve_model

    try:
        model = resolve_model(config, name)
    except ModelNotFound as exc:
        print(f"gateway: {exc.message}", file=sys.stderr)
        return 1
    if not isinstance(model, MlxModel):
        print(f"{model.name}: the {model.kind} adapter has no files to pull")
        return 0

    cache_dir = default_cache_dir(config.mlx)
    there = _already_there(model.source, model.revision, model.dummy or DummyArch(), cache_dir)

    def status(stage: str, done: int, total: int) -> None:
        if stage != "downloading" and there is None:  # downloads draw their own progress bar
            print(f"{model.name}: {stage}", file=sys.stderr)

    try:
        path = Path(resolve_source(model, cache_dir, status))
    except LoadError as exc:
        print(f"gateway: {model.name}: {exc}", file=sys.stderr)
        return 1
    if not model.source.startswith(("hf:", "dummy")):
        print(f"{model.name}: a local directory, nothing to pull: ready at {path}")
    elif there is not None and there.resolve() == path:
        where = "built" if model.source == "dummy" else "in the Hugging Face cache"
        print(f"{model.name}: already {where}: ready at {path}")
    else:
        print(f"{model.name}: ready at {path}")
    return 0


def _already_there(source: str, revision: str | None, arch: DummyArch, cache_dir: Path) -> Path | None:
    """The directory a dummy or hf: model already has on this machine, or None."""
    from gateway.adapters.mlx.dummy import FILES, dummy_dir
    from gateway.adapters.mlx.source import cached_snapshot

    if source == "dummy":
        built = dummy_dir(arch, cache_dir)
        return built if all((built / name).is_file() for name in FILES) else None
    if source.startswith("hf:"):
        try:
            return cached_snapshot(source[3:], revision)
        except (OSError, ValueError):
            return None
    return None


def _clients(config: GatewayConfig, args: argparse.Namespace) -> int:
    import json

    from gateway.clients import base_url, codex_catalog, codex_config_toml, opencode_config, probe_capabilities
    from gateway.clients.install import install_codex, install_opencode

    url = args.base_url or base_url(config)
    probed = probe_capabilities(config)
    for model in config.models:
        if not probed[model.name].known:
            print(f"# {model.name}: its files are not on this machine yet, so tool calls and thinking are assumed; "
                  f"`gateway pull {model.name}`, then run this again", file=sys.stderr)
    into = Path(args.into).expanduser() if args.into else None
    if args.client == "opencode":
        block = opencode_config(config, url, chat=args.chat, probed=probed)
        if not args.install:
            print(json.dumps(block, indent=2))
            return 0
        xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        opencode_file = into or Path(xdg) / "opencode" / "opencode.json"
        return _install(opencode_file, lambda: install_opencode(opencode_file, block))
    codex_home = Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex")
    catalog = Path(args.catalog).expanduser() if args.catalog else codex_home / "mlx-gateway-models.json"
    document = codex_catalog(config, probed)
    try:
        catalog.parent.mkdir(parents=True, exist_ok=True)
        catalog.write_text(json.dumps(document, indent=2) + "\n")
    except OSError as exc:
        print(f"gateway: {catalog}: cannot write the model catalog: {exc}", file=sys.stderr)
        return 1
    generated = codex_config_toml(config, url, str(catalog.resolve()))
    if not args.install:
        print(f"# wrote the model catalog to {catalog}", file=sys.stderr)
        print(generated, end="")
        return 0
    slugs = [entry["slug"] for entry in document["models"]]
    print(f"{catalog}: wrote the model catalog ({len(slugs)} model(s): {', '.join(slugs)})")
    target = into or codex_home / "config.toml"
    return _install(target, lambda: install_codex(target, generated))


def _install(target: Path, install: Callable[[], Installed]) -> int:
    from gateway.clients.install import InstallError

    try:
        installed = install()
    except (InstallError, OSError) as exc:
        print(f"gateway: {target}: {exc}; nothing was changed", file=sys.stderr)
        return 1
    print("\n".join(installed.report()))
    return 0


def _init(path: str, force: bool) -> int:

    from gateway.starter import write_starter

    try:
        write_starter(Path(path), force=force)
    except FileExistsError:
        print(f"gateway: {path} already exists; pass --force to overwrite it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gateway: {path}: {exc}", file=sys.stderr)
        return 1
    print(f"{path}: wrote a starter manifest (check it with `gateway check --config {path}`)")
    return 0


def _scan(directory: str | None) -> int:

    from gateway.starter import hf_cache_dir, manifest_entries, scan_directory, scan_hf_cache

    if directory is None:
        cache = hf_cache_dir()
        found, where = scan_hf_cache(cache), f"the Hugging Face cache ({cache})"
    else:
        root = Path(directory).expanduser()
        if not root.is_dir():
            print(f"gateway: {directory}: not a directory", file=sys.stderr)
            return 1
        found, where = scan_directory(root), str(root.resolve())
    print(manifest_entries(found, where), end="")
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
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "init":
        return _init(args.path, args.force)
    if args.command == "scan":
        return _scan(args.dir)
    if args.command == "clients" and args.chat and args.client == "codex":
        parser.error("--chat applies to opencode only: Codex reaches the gateway through /v1/responses")
    if args.command == "clients" and args.into and not args.install:
        parser.error("--into goes with --install")
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
