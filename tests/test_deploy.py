"""deploy/ files parse, agree with the CLI, and keep the safe defaults."""

from __future__ import annotations

import configparser
import plistlib

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
