from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli import main
from tests.conftest import ROOT
from tests.process import environ


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return str(path)


def test_check_accepts_the_shipped_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(ROOT / "gateway.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ok (3 model(s): scripted, echo, tiny; store memory://)" in out


def test_check_prints_every_problem_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "server: {port: x}\nmodels: [{name: a, adapter: scripted, source: nope}]\n")
    assert main(["check", "--config", path]) == 1
    err = capsys.readouterr().err
    assert f"{path}: invalid manifest (2 problem(s))" in err
    assert "  server.port: Expected `int`, got `str`" in err
    assert "  models[0].source: unknown key" in err


def test_models_lists_names_aliases_and_adapters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--config", str(ROOT / "gateway.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "ADAPTER", "ALIASES", "CONTEXT", "POLICY"]
    assert lines[1].split() == ["scripted", "scripted", "demo", "32768", "default"]


def test_run_refuses_an_invalid_manifest_without_starting(tmp_path: Path) -> None:
    path = write(tmp_path, "store: {url: 'ftp://x'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "run", "--config", path, "--port", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 1
    assert "store.url: unsupported URL 'ftp://x'" in result.stderr
    assert "Uvicorn running" not in result.stderr


def test_missing_manifest_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read the manifest" in capsys.readouterr().err


def test_run_serves_until_terminated(tmp_path: Path) -> None:
    """`gateway run` answers, then stops cleanly on SIGTERM."""
    import httpx

    from tests.process import GatewayProcess

    gateway = GatewayProcess(ROOT / "gateway.yaml", tmp_path / "gateway.log")
    with gateway:
        assert httpx.get(f"{gateway.base}/health", timeout=5).json()["status"] == "ok"
        answer = httpx.post(f"{gateway.base}/v1/responses", json={"model": "demo", "input": "hi"}, timeout=10)
        assert answer.json()["status"] == "completed"
    # uvicorn shuts down gracefully, then re-raises SIGTERM so the exit status shows the signal.
    assert gateway.process.returncode in (0, -15)
    log = gateway.log()
    assert "Application shutdown complete" in log
    assert '"event":"request"' in log and '"path":"/v1/responses"' in log


def test_pull_builds_a_dummy_and_reports_missing_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    path = write(tmp_path, f"""
mlx: {{cache_dir: "{tmp_path / 'cache'}"}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, dummy: {{hidden_size: 32, layers: 1, heads: 2, kv_heads: 1,
      intermediate_size: 64, vocab_size: 512}}}}
  - {{name: remote, adapter: mlx, source: "hf:example-org/not-cached-model"}}
  - {{name: local, adapter: mlx, source: "{tmp_path / 'nowhere'}"}}
  - {{name: scripted, adapter: scripted, script: {{mode: echo}}}}
""")
    assert main(["pull", "tiny", "--config", path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("tiny: ready at ") and (tmp_path / "cache").is_dir()
    built = Path(out.split("ready at ", 1)[1].strip())
    assert (built / "model.safetensors").is_file() and (built / "tokenizer.json").is_file()
    assert main(["pull", "remote", "--config", path]) == 1
    assert "not in the Hugging Face cache and the hub cannot be reached" in capsys.readouterr().err
    assert main(["pull", "local", "--config", path]) == 1
    assert "no model directory at" in capsys.readouterr().err
    assert main(["pull", "scripted", "--config", path]) == 0
    assert "has no files to pull" in capsys.readouterr().out
    assert main(["pull", "nope", "--config", path]) == 1


# ------------------------------------------------------------------ pull: a model already there says so


def test_pull_says_a_built_dummy_is_already_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"""
mlx: {{cache_dir: "{tmp_path / 'cache'}"}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, dummy: {{hidden_size: 32, layers: 1, heads: 2, kv_heads: 1,
      intermediate_size: 64, vocab_size: 512, seed: 7}}}}
""")
    assert main(["pull", "tiny", "--config", path]) == 0
    first = capsys.readouterr()
    assert "tiny: building dummy" in first.err and first.out.startswith("tiny: ready at ")
    built = first.out.split("ready at ", 1)[1].strip()
    assert main(["pull", "tiny", "--config", path]) == 0
    second = capsys.readouterr()
    assert "building" not in second.err
    assert second.out == f"tiny: already built: ready at {built}\n"


def test_pull_says_a_cached_hf_model_is_already_there(tmp_path: Path) -> None:
    """In a subprocess: huggingface-hub reads HF_HUB_CACHE once, when it is imported."""
    from tests.test_clients import hf_repo, write_model

    snapshot = hf_repo(tmp_path / "hub", "example-org/coder", write_model(tmp_path / "files", tools=True))
    local = write_model(tmp_path / "local", tools=False)
    path = write(tmp_path, f"""
models:
  - {{name: coder, adapter: mlx, source: "hf:example-org/coder"}}
  - {{name: mine, adapter: mlx, source: "{local}"}}
""")
    env = environ(HF_HUB_CACHE=tmp_path / "hub", HF_HUB_OFFLINE="1")
    for name, expected in (("coder", f"coder: already in the Hugging Face cache: ready at {snapshot}\n"),
                           ("mine", f"mine: a local directory, nothing to pull: ready at {local}\n")):
        result = subprocess.run([sys.executable, "-m", "gateway", "pull", name, "--config", path],
                                capture_output=True, text=True, timeout=60, env=env, check=False)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected


# ------------------------------------------------------------------ init


def test_init_writes_a_commented_manifest_that_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "conf" / "my.yaml"
    assert main(["init", str(target)]) == 0
    assert f"{target}: wrote a starter manifest" in capsys.readouterr().out
    text = target.read_text()
    assert text.count("\n#") + text.count("  # ") > 10  # explained, not bare
    assert main(["check", "--config", str(target)]) == 0
    assert "ok (1 model(s): scripted; store memory://)" in capsys.readouterr().out


def test_init_commented_model_is_valid_once_uncommented() -> None:
    from gateway.config import parse_config
    from gateway.starter import STARTER_MANIFEST

    lines = STARTER_MANIFEST.splitlines()
    start = lines.index("  # - name: qwen")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    text = STARTER_MANIFEST.replace("\n".join(lines[start:start + len(block)]), "\n".join(block))
    config = parse_config(text)
    qwen = config.models[1]
    assert qwen.name == "qwen" and qwen.source == "hf:mlx-community/Qwen3-0.6B-4bit"  # type: ignore[union-attr]


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLXGW_CONFIG", "named-by-env.yaml")  # the default path, as for every other command
    Path("named-by-env.yaml").write_text("models: []\n")
    assert main(["init"]) == 1
    assert "named-by-env.yaml already exists; pass --force" in capsys.readouterr().err
    assert Path("named-by-env.yaml").read_text() == "models: []\n"
    assert main(["init", "--force"]) == 0
    assert "gateway init" in Path("named-by-env.yaml").read_text()


# ------------------------------------------------------------------ scan


def test_scan_lists_the_mlx_models_of_the_hf_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import MlxModel, parse_config
    from tests.test_clients import hf_repo, write_model

    hub = tmp_path / "hub"
    hf_repo(hub, "mlx-community/Coder-1B-4bit", write_model(tmp_path / "a", tools=True, max_position=131072))
    hf_repo(hub, "someone/Plain.Model", write_model(tmp_path / "b", tools=False, max_position=2048),
            commit="b" * 40, ref="v2")
    no_weights = write_model(tmp_path / "c", tools=True)
    (no_weights / "model.safetensors").unlink()
    hf_repo(hub, "someone/no-weights", no_weights)
    no_tokenizer = write_model(tmp_path / "d", tools=True)
    (no_tokenizer / "tokenizer.json").unlink()
    hf_repo(hub, "someone/no-tokenizer", no_tokenizer)
    datasets = hub / "datasets--someone--data" / "snapshots" / ("c" * 40)
    write_model(datasets, tools=False)  # a dataset repo is never a model, whatever it holds
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    assert main(["scan"]) == 0
    out = capsys.readouterr().out
    assert f"# 2 mlx-lm model(s) in the Hugging Face cache ({hub})." in out
    config = parse_config(out)  # a manifest on its own
    models = {m.name: m for m in config.models if isinstance(m, MlxModel)}
    assert list(models) == ["coder-1b-4bit", "plain.model"]
    assert models["coder-1b-4bit"].source == "hf:mlx-community/Coder-1B-4bit"
    assert models["coder-1b-4bit"].revision is None and models["coder-1b-4bit"].context_length == 32768
    assert models["plain.model"].revision == "v2" and models["plain.model"].context_length == 2048
    assert "context_length: 32768  # the model allows 131072" in out
    assert "tool parser json_tools; thinks" in out and "no tool calls (tools become a note); no thinking" in out


def test_scan_searches_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.config import parse_config
    from tests.test_clients import write_model

    one = write_model(tmp_path / "models" / "one", tools=True)
    two = write_model(tmp_path / "models" / "org" / "two words", tools=False)
    write_model(tmp_path / "models" / ".hidden" / "three", tools=False)
    write_model(tmp_path / "models" / "a" / "b" / "c" / "too-deep", tools=False)
    (tmp_path / "models" / "notes").mkdir()
    assert main(["scan", str(tmp_path / "models")]) == 0
    config = parse_config(capsys.readouterr().out)
    assert [(m.name, m.source) for m in config.models] == [  # type: ignore[union-attr]
        ("one", str(one)), ("two-words", str(two))]
    assert main(["scan", str(tmp_path / "nowhere")]) == 1
    assert "not a directory" in capsys.readouterr().err
    assert main(["scan", str(tmp_path / "models" / "notes")]) == 0
    assert "# 0 mlx-lm model(s)" in capsys.readouterr().out


# ------------------------------------------------------------------ the environment


def test_mlxgw_config_names_the_default_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "models: [{name: from-env, adapter: scripted, script: {mode: echo}}]\n")
    monkeypatch.chdir(tmp_path / "..")  # no gateway.yaml here: only the variable can name it
    monkeypatch.setenv("MLXGW_CONFIG", path)
    assert main(["check"]) == 0
    assert f"{path}: ok (1 model(s): from-env;" in capsys.readouterr().out
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "from-env"
    assert main(["check", "--config", str(ROOT / "gateway.yaml")]) == 0  # --config still wins
    assert "scripted, echo, tiny" in capsys.readouterr().out


def test_mlxgw_store_url_replaces_store_url(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "store: {url: 'memory://'}\nmodels: [{name: a, adapter: scripted, script: {mode: echo}}]\n")
    monkeypatch.setenv("MLXGW_STORE_URL", "redis://127.0.0.1:6390/3")
    assert main(["check", "--config", path]) == 0
    assert "store redis://127.0.0.1:6390/3)" in capsys.readouterr().out
    monkeypatch.setenv("MLXGW_STORE_URL", "ftp://nope")
    assert main(["check", "--config", path]) == 1
    assert "store.url (from MLXGW_STORE_URL): unsupported URL 'ftp://nope'" in capsys.readouterr().err


def test_gateway_run_serves_the_store_mlxgw_store_url_names(tmp_path: Path) -> None:
    """`gateway run` goes through the same loading: with the variable pointing at a closed port, the store is down."""
    import httpx

    from tests.process import GatewayProcess, free_port

    manifest = Path(write(tmp_path, "models: [{name: a, adapter: scripted, script: {mode: echo}}]\n"))
    env = environ(MLXGW_STORE_URL=f"redis://127.0.0.1:{free_port()}/0")
    with GatewayProcess(manifest, tmp_path / "gateway.log", env=env) as gateway:
        health = httpx.get(f"{gateway.base}/health", timeout=5).json()
        assert health["store"]["state"] == "unavailable" and health["status"] == "degraded"
        stored = httpx.post(f"{gateway.base}/v1/responses", json={"model": "a", "input": "x"}, timeout=10)
        assert stored.status_code == 503 and stored.json()["error"]["code"] == "store_unavailable"


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.mlx
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
def test_mlxgw_worker_preload_loads_libraries_into_workers_only(tmp_path: Path) -> None:
    """MLXGW_WORKER_PRELOAD: libraries loaded into each model worker before MLX, never into the gateway; a library
    that cannot be loaded fails the model's load with a message naming the variable."""
    import ctypes.util

    import httpx

    from tests.process import GatewayProcess

    library = next((found for name in ("gdbm", "xxhash", "uuid") if (found := ctypes.util.find_library(name))), None)
    if library is None:
        pytest.skip("no spare shared library to preload")
    manifest = Path(write(tmp_path, f"""
mlx: {{cache_dir: "{tmp_path / 'cache'}"}}
models:
  - {{name: tiny, adapter: mlx, source: dummy, sampling: {{max_output_tokens: 4}},
      dummy: {{hidden_size: 32, layers: 1, heads: 2, kv_heads: 1, intermediate_size: 64, vocab_size: 512}}}}
"""))
    body = {"model": "tiny", "input": "hi"}
    env = environ(MLXGW_WORKER_PRELOAD=f"/nonexistent/libmissing.so{os.pathsep}{library}", HF_HUB_OFFLINE="1")
    with GatewayProcess(manifest, tmp_path / "bad.log", env=env) as gateway:
        failed = httpx.post(f"{gateway.base}/v1/responses", json=body, timeout=120)
        assert failed.status_code == 503, failed.text
        assert failed.json()["error"]["code"] == "model_unavailable"
        assert "$MLXGW_WORKER_PRELOAD: cannot load '/nonexistent/libmissing.so'" in failed.json()["error"]["message"]

    env = environ(MLXGW_WORKER_PRELOAD=library, HF_HUB_OFFLINE="1")
    with GatewayProcess(manifest, tmp_path / "good.log", env=env) as gateway:
        answer = httpx.post(f"{gateway.base}/v1/responses", json=body, timeout=120)
        assert answer.status_code == 200 and answer.json()["status"] in ("completed", "incomplete"), answer.text
        worker = httpx.get(f"{gateway.base}/health", timeout=5).json()["models"]["tiny"]["pid"]
        assert library in _maps(worker)
        assert library not in _maps(gateway.process.pid)
