"""`TorchEmbedder`: the embedder over a PyTorch backbone, from a backbone checkpoint, a live model or
random weights (the floor a trained model must beat)."""

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from faceid.backbones import build_backbone
from faceid.checkpoint import BackboneCheckpoint, read_backbone_checkpoint
from faceid.device import resolve_device
from faceid.model_input import ModelInput


class TorchEmbedder:
    """An embedder over a PyTorch backbone (eval mode, no gradients), batched."""

    def __init__(self, model: torch.nn.Module, name: str, embedding_dim: int, model_input: ModelInput,
                 device: str | torch.device = "auto", batch_size: int = 64, identity: str = ""):
        self.device = device if isinstance(device, torch.device) else resolve_device(device)
        self.model = model.to(self.device).eval()
        self.name, self.embedding_dim, self.model_input = name, embedding_dim, model_input
        self.batch_size, self.identity = batch_size, identity
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A hash of the name, size, model input and weights, computed on first use from the weights
        of that moment (so wrapping a live model, as validation during training does, hashes nothing)."""
        if self._fingerprint is None:
            digest = hashlib.sha256(json.dumps([self.name, self.embedding_dim, asdict(self.model_input),
                                                self.identity]).encode())
            for tensor in self.model.state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | BackboneCheckpoint, device: str = "auto",
                        batch_size: int = 64) -> "TorchEmbedder":
        """The embedder of a backbone checkpoint: a path (read with `read_backbone_checkpoint`, whose
        errors name it) or one read already."""
        if not isinstance(checkpoint, BackboneCheckpoint):
            checkpoint = read_backbone_checkpoint(checkpoint)
        return cls(checkpoint.build(), checkpoint.backbone, checkpoint.embedding_dim, checkpoint.model_input,
                   device, batch_size)

    @classmethod
    def untrained(cls, backbone: str, embedding_dim: int = 128, input_size: int = 112, seed: int = 0,
                  device: str = "auto", batch_size: int = 64) -> "TorchEmbedder":
        """A randomly initialised backbone (seeded): the floor any trained model must beat."""
        torch.manual_seed(seed)
        model = build_backbone(backbone, embedding_dim, input_size)
        return cls(model, backbone, embedding_dim, ModelInput(input_size=input_size), device, batch_size,
                   identity=f"untrained-seed{seed}")

    @torch.no_grad()
    def embed(self, crops) -> np.ndarray:
        """Crops (an (N, H, W, 3) RGB array or a list of arrays) -> (N, d) unit float32 embeddings."""
        outputs = []
        for start in range(0, len(crops), self.batch_size):
            batch = torch.from_numpy(self.model_input.apply(crops[start:start + self.batch_size])).to(self.device)
            outputs.append(torch.nn.functional.normalize(self.model(batch).float(), dim=1).cpu().numpy())
        return np.concatenate(outputs) if outputs else np.zeros((0, self.embedding_dim), np.float32)
