"""export: ONNX export, the onnxruntime embedder, and quantization.

Imports `faceid` only. Its `Embedder` is what every consumer of embeddings takes.
"""
