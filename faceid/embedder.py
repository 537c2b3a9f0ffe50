"""The embedder interface every consumer of embeddings takes, and the raw-pixel baseline embedder.

An embedder maps aligned face crops, RGB uint8 arrays of shape (N, H, W, 3), to L2-normalised
float32 embeddings (N, d). It carries a `fingerprint` that changes whenever its outputs would
(weights, model input), used to key caches and to refuse mixing incompatible embeddings, and its
`model_input` (`faceid.model_input.ModelInput`), which says how faces must be aligned for it.
`faceid.torch_embedder.TorchEmbedder` and the ONNX runtime embedder (`export`) implement it.
"""

from typing import Protocol

import numpy as np

from faceid.arrays import l2_normalize
from faceid.model_input import ModelInput


class Embedder(Protocol):
    embedding_dim: int
    fingerprint: str
    model_input: ModelInput

    def embed(self, crops) -> np.ndarray: ...


def embedding_cache_key(embedder: Embedder) -> str:
    """What a cache of photo embeddings is keyed by: the embedder's fingerprint and the crop it is given
    (`ModelInput.crop_key`), so neither other weights nor a changed template ever reuse its vectors."""
    return f"{embedder.fingerprint}-{embedder.model_input.crop_key()}"


class PixelEmbedder:
    """The raw-pixel baseline: the model-input crop, flattened and centred per image."""

    def __init__(self, input_size: int = 112):
        self.model_input = ModelInput(input_size=input_size)
        self.embedding_dim = 3 * input_size * input_size
        self.fingerprint = f"pixels-{input_size}"

    def embed(self, crops) -> np.ndarray:
        flat = self.model_input.apply(crops).reshape(len(crops), -1)
        flat -= flat.mean(1, keepdims=True)
        return l2_normalize(flat, axis=1)
