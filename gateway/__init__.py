"""mlx-gateway: local models behind the OpenAI Responses API, configured by one YAML manifest."""

__version__ = "0.1.0"
__all__ = ["__version__"]
