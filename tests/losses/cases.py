"""Every registered loss with hyperparameters to test, and how its naive reference reads the loss."""

import torch

from tests.losses import reference as ref

D, C = 6, 4


def batch(seed: int = 0, per_class: int = 3, classes: int = C, dim: int = D, dtype=torch.float64):
    """A batch where every class appears `per_class` times, and random float64 embeddings."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(per_class)
    embeddings = torch.randn(len(labels), dim, generator=generator, dtype=dtype)
    return embeddings, labels


def randomise(loss, seed: int = 1):
    """Give every learnable parameter a random value, so references are tested away from init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in loss.named_parameters():
            if name.endswith(("s", "alpha")) and parameter.dim() == 0:
                continue
            if name.endswith("whitening"):
                parameter.copy_(torch.eye(parameter.shape[0], dtype=parameter.dtype)
                                + 0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype) * 0.5)
    return loss


def _ce(loss):
    return loss.main if hasattr(loss, "main") else loss


def precision(lace, dtype) -> torch.Tensor:
    """LACE's background precision MMᵀ + εI, built by hand from its parameters."""
    return lace.whitening @ lace.whitening.T + lace.eps * torch.eye(lace.embedding_dim, dtype=dtype)


# name -> (hyperparameters, reference(loss, x, y) -> value)
CASES = {
    "softmax": ({}, lambda loss, x, y: ref.softmax(x, y, loss.weight, loss.bias)),
    "l2softmax": ({"alpha": 5.0}, lambda loss, x, y: ref.l2softmax(x, y, loss.weight, loss.bias, 5.0)),
    "normface": ({"s": 7.0}, lambda loss, x, y: ref.normface(x, y, loss.weight, loss.s)),
    "coco": ({"alpha": 6.0}, lambda loss, x, y: ref.coco(x, y, loss.centers, 6.0)),
    "arcface": ({"s": 8.0, "m": 0.5}, lambda loss, x, y: ref.combined(x, y, loss.weight, 8.0, 1.0, 0.5, 0.0)),
    "cosface": ({"s": 8.0, "m": 0.35}, lambda loss, x, y: ref.combined(x, y, loss.weight, 8.0, 1.0, 0.0, 0.35)),
    "amsoftmax": ({}, lambda loss, x, y: ref.combined(x, y, loss.weight, 30.0, 1.0, 0.0, 0.4)),
    "combined": ({"s": 10.0, "m1": 1.2, "m2": 0.3, "m3": 0.1},
                 lambda loss, x, y: ref.combined(x, y, loss.weight, 10.0, 1.2, 0.3, 0.1)),
    "sphereface": ({"m": 4}, lambda loss, x, y: ref.large_margin(x, y, loss.weight, 4, loss.current_lambda(), True)),
    "lsoftmax": ({"m": 3, "lambda_start": 10.0, "lambda_min": 1.0},
                 lambda loss, x, y: ref.large_margin(x, y, loss.weight, 3, loss.current_lambda(), False)),
    "contrastive": ({"margin": 1.2}, lambda loss, x, y: ref.contrastive(x, y, 1.2)),
    "triplet": ({"margin": 0.3}, lambda loss, x, y: ref.triplet(x, y, 0.3, "semihard")),
    "center": ({"aux_weight": 0.5},
               lambda loss, x, y: ref.softmax(x, y, loss.main.weight, loss.main.bias)
               + 0.5 * ref.center_term(x, y, loss.aux.centers, 0.5)),
    "icv": ({"aux_weight": 0.3},
            lambda loss, x, y: ref.softmax(x, y, loss.main.weight, loss.main.bias)
            + 0.3 * ref.center_term(x, y, loss.aux.centers, 1.0)),
    "center_invariant": ({"aux_weight": 0.2, "invariant_weight": 0.7},
                         lambda loss, x, y: ref.softmax(x, y, loss.main.weight, loss.main.bias)
                         + 0.2 * ref.center_invariant_term(x, y, loss.aux.centers, 0.7)),
    "range": ({"aux_weight": 0.1, "k": 2, "margin": 30.0},
              lambda loss, x, y: ref.softmax(x, y, loss.main.weight, loss.main.bias)
              + 0.1 * ref.range_term(x, y, 2, 30.0)),
    "marginal": ({"aux_weight": 0.4, "threshold": 1.2, "error_margin": 0.3},
                 lambda loss, x, y: ref.softmax(x, y, loss.main.weight, loss.main.bias)
                 + 0.4 * ref.marginal_term(x, y, 1.2, 0.3)),
    "lace": ({"s": 2.0}, lambda loss, x, y: ref.lace(x, y, loss.signatures, loss.mean, precision(loss, x.dtype), 2.0)),
    "ncm": ({"metric": "euclidean"}, lambda loss, x, y: ref.ncm(x, y, loss.anchors.double(), "euclidean")),
    "lgm": ({"alpha": 0.3, "lkd_weight": 0.2},
            lambda loss, x, y: ref.lgm(x, y, loss.centers, loss.log_variances, 0.3, 0.2)),
}

# Variants that take another code path of the same class.
VARIANTS = {
    "triplet-hard": ("triplet", {"margin": 0.3, "mining": "hard"}, lambda loss, x, y: ref.triplet(x, y, 0.3, "hard")),
    "triplet-all": ("triplet", {"margin": 0.3, "mining": "all"}, lambda loss, x, y: ref.triplet(x, y, 0.3, "all")),
    "ncm-cosine": ("ncm", {"metric": "cosine"}, lambda loss, x, y: ref.ncm(x, y, loss.anchors.double(), "cosine")),
    "lace-no-mean": ("lace", {"use_mean": False},
                     lambda loss, x, y: ref.lace(x, y, loss.signatures, torch.zeros(loss.embedding_dim, dtype=x.dtype),
                                                 precision(loss, x.dtype), 1.0)),
    "lace-no-cov": ("lace", {"use_cov": False},
                    lambda loss, x, y: ref.lace(x, y, loss.signatures, loss.mean,
                                                torch.eye(loss.embedding_dim, dtype=x.dtype), 1.0)),
    "arcface+center": ("arcface+center", {"s": 8.0, "m": 0.4, "aux_weight": 0.2},
                       lambda loss, x, y: ref.combined(x, y, loss.main.weight, 8.0, 1.0, 0.4, 0.0)
                       + 0.2 * ref.center_term(x, y, loss.aux.centers, 0.5)),
    "lace+range": ("lace+range", {"aux_weight": 0.05, "aux_margin": 20.0},
                   lambda loss, x, y: ref.lace(x, y, loss.main.signatures, loss.main.mean,
                                               precision(loss.main, x.dtype), 1.0)
                   + 0.05 * ref.range_term(x, y, 2, 20.0)),
}

ALL = {name: (name, *case) for name, case in CASES.items()} | VARIANTS
PAIR_LOSSES = {"contrastive", "triplet"}
