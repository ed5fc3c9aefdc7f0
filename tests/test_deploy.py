"""deploy/ files parse, agree with the CLI, and keep the safe defaults."""

from __future__ import annotations

import configparser
import plistlib
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"


def test_launchd_plist() -> None:
    plist = plistlib.loads((DEPLOY / "launchd" / "com.mlx-gateway.plist").read_bytes())
    assert plist["Label"] == "com.mlx-gateway"
    assert plist["ProgramArguments"][1:3] == ["run", "--config"]
    assert plist["KeepAlive"] == {"SuccessfulExit": False}
    assert plist["ExitTimeOut"] >= 30


def test_systemd_unit() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "mlx-gateway.service").read_text())
    service = unit["Service"]
    assert "gateway run --config" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["KillSignal"] == "SIGTERM" and int(service["TimeoutStopSec"]) >= 30
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_compose_persists_redis_and_publishes_on_loopback_only() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    redis, gateway = compose["services"]["redis"], compose["services"]["gateway"]
    assert "redis-data:/data" in redis["volumes"]
    assert all(port.startswith("127.0.0.1:") for port in gateway["ports"])
    assert gateway["environment"]["MLXGW_STORE_URL"] == "redis://redis:6379/0"
    assert "MLXGW_API_KEY" in gateway["environment"]


def test_redis_config_is_durable() -> None:
    settings = dict(
        line.split(None, 1) for line in (DEPLOY / "redis" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert settings["appendonly"] == "yes" and settings["appendfsync"] == "everysec"
    assert settings["maxmemory-policy"] == "volatile-ttl"


@pytest.mark.parametrize(("folder", "manifest"), [("compose", "gateway.yaml"), ("scale-out", "front.yaml")])
def test_env_example_lists_every_variable_compose_reads(folder: str, manifest: str) -> None:
    """compose.yaml points at .env.example: it exists and names exactly the variables compose interpolates, which
    include every variable the manifest names for a secret."""
    compose = (DEPLOY / folder / "compose.yaml").read_text()
    assert ".env.example" in compose
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    example = (DEPLOY / folder / ".env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert read and listed == read
    gateway = yaml.safe_load((DEPLOY / folder / manifest).read_text())
    named = {key["env"] for key in gateway["auth"]["keys"]} | {gateway["auth"]["admin_key_env"]}
    named |= {model["api_key_env"] for model in gateway["models"] if "api_key_env" in model}
    assert named <= listed


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def test_systemd_unit_verifies_once_installed_as_documented(tmp_path: Path) -> None:
    """`systemd-analyze verify` against the layout deploy/README.md creates, built under a temporary prefix in place
    of /opt/mlx-gateway (the unit checks that its programs exist), with nothing else changed."""
    analyze = systemd_analyze()
    unit = (DEPLOY / "systemd" / "mlx-gateway.service").read_text()
    prefix = tmp_path / "opt-mlx-gateway"
    program = prefix / ".venv" / "bin" / "gateway"  # what `pip install` into the documented venv provides
    program.parent.mkdir(parents=True)
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    installed = tmp_path / "mlx-gateway.service"
    installed.write_text(unit.replace("/opt/mlx-gateway", str(prefix)))
    result = subprocess.run([analyze, "verify", "--man=no", str(installed)], capture_output=True, text=True, check=False,
                            timeout=120)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_deploy_readme_describes_what_the_service_files_assume() -> None:
    """Every user, path and program the systemd unit and the launchd agent rely on is in deploy/README.md."""
    readme = (DEPLOY / "README.md").read_text()
    unit = (DEPLOY / "systemd" / "mlx-gateway.service").read_text()
    service = {key: value for key, _, value in
               (line.partition("=") for line in unit.splitlines() if "=" in line and not line.startswith("#"))}
    assumed = {service["User"], service["Group"], service["WorkingDirectory"], service["EnvironmentFile"].lstrip("-"),
               *service["ExecStart"].split()[0:1], *re.findall(r"/[\w./-]+", service["ExecStart"]),
               *re.findall(r"/[\w./-]+", unit.split("[Service]", 1)[1].split("[Install]", 1)[0])}
    assumed = {path for path in assumed if not path.startswith(("/bin/", "/usr/"))}
    assert "mlx-gateway" in assumed and "/opt/mlx-gateway/.venv/bin/gateway" in assumed
    assert sorted(path for path in assumed if path not in readme) == []
    plist = (DEPLOY / "launchd" / "com.mlx-gateway.plist").read_text()
    home_paths = {"~" + path for path in re.findall(r"__HOME__(/[\w./-]+)", plist.split("<plist", 1)[1])}
    assert "~/mlx-gateway/.venv/bin/gateway" in home_paths
    assert sorted(path for path in home_paths if path not in readme) == []
    assert "useradd" in readme and "python3 -m venv /opt/mlx-gateway/.venv" in readme


def test_scale_out_manifests_check_and_agree_on_the_host_key() -> None:
    """The scale-out example: both manifests pass the manifest checks, every front model is an upstream model, and the
    key the fronts send is the one the model host accepts."""
    from gateway.config import UpstreamModel, load_config

    front = load_config(DEPLOY / "scale-out" / "front.yaml", environ={})
    host = load_config(DEPLOY / "scale-out" / "model-host.yaml", environ={})
    assert front.models and all(isinstance(m, UpstreamModel) for m in front.models)
    host_key = {key.env for key in host.auth.keys}
    served = {m.name for m in host.models}
    for model in front.models:
        assert isinstance(model, UpstreamModel)
        if model.api == "responses":
            assert model.api_key_env in host_key and model.upstream_model in served
    assert front.store.url.startswith("redis://") and host.store.url == "memory://"
    assert "scale-out/README.md" in (ROOT / "README.md").read_text()


SCALE_OUT = DEPLOY / "scale-out"


def test_every_scale_out_yaml_is_checked_here() -> None:
    """A YAML file added to deploy/scale-out/ gets a test: the manifests below, the compose file further down."""
    assert sorted(path.name for path in SCALE_OUT.glob("*.y*ml")) == ["compose.yaml", "front.yaml", "model-host.yaml"]


@pytest.mark.parametrize("manifest", ["scale-out/front.yaml", "scale-out/model-host.yaml", "compose/gateway.yaml"])
def test_deploy_manifest_passes_gateway_check(manifest: str, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    monkeypatch.delenv("MLXGW_STORE_URL", raising=False)  # check the file's own store.url
    path = DEPLOY / manifest
    assert main(["check", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: ok (")


def scale_out_fronts() -> dict[str, dict[str, Any]]:
    compose = yaml.safe_load((SCALE_OUT / "compose.yaml").read_text())
    return {name: service for name, service in compose["services"].items() if name.startswith("front")}


def test_scale_out_compose_runs_interchangeable_fronts_on_one_redis() -> None:
    """Two fronts from one definition: the same manifest, the shared Redis, every secret front.yaml names, an image
    built by the compose deployment's Dockerfile; published on loopback only, Redis not at all."""
    compose = yaml.safe_load((SCALE_OUT / "compose.yaml").read_text())
    redis, fronts = compose["services"]["redis"], scale_out_fronts()
    assert len(fronts) == 2 and "ports" not in redis and "redis-data:/data" in redis["volumes"]
    manifest = yaml.safe_load((SCALE_OUT / "front.yaml").read_text())
    secrets = {key["env"] for key in manifest["auth"]["keys"]} | {manifest["auth"]["admin_key_env"]}
    secrets |= {model["api_key_env"] for model in manifest["models"] if "api_key_env" in model}
    published = []
    for front in fronts.values():
        assert front["command"][:4] == ["gateway", "run", "--config", "/etc/mlx-gateway/front.yaml"]
        assert "./front.yaml:/etc/mlx-gateway/front.yaml:ro" in front["volumes"]
        assert front["environment"]["MLXGW_STORE_URL"] == "redis://redis:6379/0"
        assert secrets <= set(front["environment"])
        assert front["depends_on"]["redis"]["condition"] == "service_healthy"
        assert (SCALE_OUT / front["build"]["context"] / front["build"]["dockerfile"]).is_file()
        assert all(port.startswith("127.0.0.1:") for port in front["ports"])
        published += [port.rsplit(":", 2)[1] for port in front["ports"]]
    assert len(set(published)) == len(published) == 2


def test_scale_out_models_have_replicas_and_fit_the_hosts() -> None:
    """Every model-host model of the front has two replicas on the model host's port, and all fronts together never
    hold more requests open on a host than it batches and queues (the rest would be refused with 429)."""
    from gateway.config import MlxModel, UpstreamModel, load_config

    front = load_config(SCALE_OUT / "front.yaml", environ={})
    host = load_config(SCALE_OUT / "model-host.yaml", environ={})
    served = {model.name: model for model in host.models if isinstance(model, MlxModel)}
    on_hosts = [m for m in front.models if isinstance(m, UpstreamModel) and m.api == "responses"]
    assert len(on_hosts) == 2 and {m.upstream_model for m in on_hosts} == set(served)
    for model in on_hosts:
        assert len(model.base_urls) == 2
        assert all(url.endswith(f":{host.server.port}/v1") for url in model.base_urls)
        capacity = served[model.upstream_model].max_batch + served[model.upstream_model].max_queued
        assert len(scale_out_fronts()) * model.max_connections <= capacity
