"""faceid.export: ONNX export, the onnxruntime embedder, and quantization.

Imports `faceid` only. Its `Embedder` is what every consumer of embeddings takes.
"""

from faceid.export.embedder import OnnxEmbedder, load_embedder  # noqa: E402

__all__ = ["OnnxEmbedder", "load_embedder"]
