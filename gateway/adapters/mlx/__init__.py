"""The `mlx` adapter: mlx-lm models, one worker process each.

Importing this package never imports MLX; only worker processes do.
"""

from gateway.adapters.mlx.adapter import MlxAdapter
from gateway.adapters.mlx.pool import WorkerPool

__all__ = ["MlxAdapter", "WorkerPool"]
