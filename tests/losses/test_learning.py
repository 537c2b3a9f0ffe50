"""Every loss trains a tiny MLP on separable synthetic data: classification losses reach high
training accuracy through `logits`, pair losses separate same from different distances."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from faceid.losses import available_losses, build_loss

# Each case trains a small network for hundreds of steps: 1-2 s idle, 10-36 s each on a loaded machine.
pytestmark = pytest.mark.slow

CLASSES, INPUT_DIM, EMBEDDING_DIM = 6, 10, 16
PAIR_LOSSES = {"contrastive", "triplet"}
# Hyperparameters sized for a 6-class toy problem (the defaults are tuned for 10k+ identities).
TOY = {"arcface": {"s": 16.0, "m": 0.3}, "cosface": {"s": 16.0, "m": 0.2}, "amsoftmax": {"s": 16.0, "m": 0.2},
       "combined": {"s": 16.0, "m2": 0.2, "m3": 0.05}, "lace": {"s": 8.0}, "lsoftmax": {"m": 2},
       "sphereface": {"m": 2}}


def _data():
    generator = torch.Generator().manual_seed(0)
    means = torch.randn(CLASSES, INPUT_DIM, generator=generator) * 3
    labels = torch.arange(CLASSES).repeat(40)
    inputs = means[labels] + torch.randn(len(labels), INPUT_DIM, generator=generator)
    return inputs, labels


@pytest.mark.parametrize("name", available_losses())
def test_tiny_mlp_learns(name):
    torch.manual_seed(0)
    inputs, labels = _data()
    model = nn.Sequential(nn.Linear(INPUT_DIM, 32), nn.ReLU(), nn.Linear(32, EMBEDDING_DIM))
    loss = build_loss(name, EMBEDDING_DIM, CLASSES, **TOY.get(name, {}))
    optimiser = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=0.01)
    for _ in range(300):
        batch = torch.randperm(len(labels))[:60]
        value = loss(model(inputs[batch]), labels[batch])
        optimiser.zero_grad()
        value.backward()
        optimiser.step()
    model.eval()
    loss.eval()
    with torch.no_grad():
        embeddings = model(inputs)
        if name in PAIR_LOSSES:
            unit = F.normalize(embeddings, dim=1)
            distances = torch.cdist(unit, unit)
            same = labels[:, None] == labels[None, :]
            off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
            same_mean = distances[same & off_diagonal].mean()
            different_min = distances[~same].quantile(0.01)
            assert same_mean < 0.5 * different_min
        else:
            accuracy = (loss.logits(embeddings).argmax(1) == labels).float().mean().item()
            assert accuracy > 0.95, f"{name}: training accuracy {accuracy:.3f}"
