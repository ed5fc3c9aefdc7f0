"""deploy/ files parse, agree with the CLI, and keep the safe defaults."""

from __future__ import annotations

import configparser
import plistlib
import re
import shutil
import subprocess
from pathlib import Path

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


def test_env_example_lists_every_variable_compose_reads() -> None:
    """compose.yaml points at .env.example: it exists and names exactly the variables compose interpolates."""
    compose = (DEPLOY / "compose" / "compose.yaml").read_text()
    assert ".env.example" in compose
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", compose))
    example = (DEPLOY / "compose" / ".env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert read and listed == read
    gateway = yaml.safe_load((DEPLOY / "compose" / "gateway.yaml").read_text())
    named = {key["env"] for key in gateway["auth"]["keys"]} | {gateway["auth"]["admin_key_env"]}
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
