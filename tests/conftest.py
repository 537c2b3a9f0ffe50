import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real face images beside the checkout (../shared/data); tests skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (expected ../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """A small synthetic dataset shared by the tests of one session: 12 identities x 4 images."""
    from faceid.data.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("synthetic")
    generate_dataset(out, identities=12, images_per_identity=4, seed=3, progress=False)
    return out


os.environ.setdefault("OMP_NUM_THREADS", "2")
# Where benchmarks and tools look for the real data sets (faceid.data.locations); a value set by the user stays.
os.environ.setdefault("FACEID_DATA", str(SHARED_DATA))
