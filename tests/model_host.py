"""A model host for the scale-out tests: a real `gateway run` serving a forced MLX dummy model (`local-mlx`, it says
the last user message back) and whatever scripted models a test adds, for a front gateway to reach upstream."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.process import GatewayProcess

__all__ = ["model_host"]

FORCED_MLX = """
  - name: local-mlx
    adapter: mlx
    source: dummy
    dummy: {hidden_size: 64, layers: 2, heads: 2, kv_heads: 1, intermediate_size: 128, vocab_size: 1024}
    testing: {force: last_user}
"""


@contextmanager
def model_host(folder: Path, scripted: str = "") -> Iterator[GatewayProcess]:
    """`scripted`: more entries of the host's `models:` list, as YAML indented by two spaces."""
    manifest = folder / "host.yaml"
    manifest.write_text(f'mlx: {{cache_dir: "{folder / "mlx-cache"}"}}\nmodels:{FORCED_MLX}{scripted}')
    with GatewayProcess(manifest, folder / "host.log") as process:
        yield process
