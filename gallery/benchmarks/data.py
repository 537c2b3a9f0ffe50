"""What the gallery bench measures with: face-like synthetic templates, a queries-per-second clock, index names."""

import time

import numpy as np

from faceid.arrays import l2_normalize

LATENT_DIM = 64  # face embeddings have a low intrinsic dimension: identity centres span a subspace
MEASURE_SECONDS = 0.5  # how long each rate is measured


def clustered_templates(rng, size: int, dim: int = 512, latent: int | None = LATENT_DIM,
                        per_identity: int = 5) -> np.ndarray:
    """`size` unit `dim`-d templates: `per_identity` per identity, each its identity's centre plus isotropic noise
    (cos ~0.75 to the centre in 512-d); centres are random in a `latent`-dim subspace (None: in all `dim`, a harder
    case for any partition than real embeddings, whose intrinsic dimension is far below 512)."""
    count = -(-size // per_identity)
    if latent:
        basis = np.linalg.qr(rng.standard_normal((dim, latent), dtype=np.float32))[0].T
        centres = rng.standard_normal((count, latent), dtype=np.float32) @ basis
    else:
        centres = rng.standard_normal((count, dim), dtype=np.float32)
    templates = np.repeat(l2_normalize(centres, axis=1), per_identity, axis=0)[:size]
    templates += rng.standard_normal(templates.shape, dtype=np.float32) * np.float32(0.9 / np.sqrt(dim))
    return l2_normalize(templates, axis=1)


def rate(function, queries: int, *arguments) -> float:
    """Queries per second of `function(*arguments)`, which answers `queries` queries per call: one warm-up call,
    then calls for `MEASURE_SECONDS`."""
    function(*arguments)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < MEASURE_SECONDS:
        function(*arguments)
        count += queries
    return count / (time.perf_counter() - started)


def index_name(index) -> str:
    """What a `VectorIndex` built and its tuned parameters, e.g. `IVF512,PQ64x4fs,RFlat nprobe=12 k_factor=4`."""
    record = index.tuning or {}
    if not record.get("parameter"):
        return index.built_factory
    k_factor = f" k_factor={record['k_factor']}" if "k_factor" in record else ""
    return f"{index.built_factory} {record['parameter']}={record['value']}{k_factor}"
