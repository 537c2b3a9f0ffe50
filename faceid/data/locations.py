"""Where the real face data sets are: an explicit folder (`--data`), else the `FACEID_DATA` environment
variable, the folder that holds the data sets (`orl/`, `caltech_faces/`, `photos/`...).

Benchmarks and tools find real photos only through here; nothing in the product assumes a location.
"""

import os
from pathlib import Path

ENVIRONMENT = "FACEID_DATA"


class DataNotConfigured(ValueError):
    """Neither an explicit folder nor FACEID_DATA says where the real data sets are."""


def real_data(explicit: Path | None, subset: str | None = None, default: Path | None = None) -> Path:
    """`explicit` when given (as is: the folder the caller wants), else $FACEID_DATA, joined with `subset`
    (a data set's folder name) when given, else `default` joined likewise (a script's own fallback), else
    DataNotConfigured saying how to configure it. The folder is not checked: a caller that can run without
    it says so itself."""
    if explicit is not None:
        return Path(explicit)
    configured = os.environ.get(ENVIRONMENT, "").strip()
    root = Path(configured).expanduser() if configured else default
    if root is None:
        wanted = f"the {subset} data set" if subset else "the real face data sets"
        raise DataNotConfigured(f"no folder given for {wanted}: pass --data FOLDER, or set {ENVIRONMENT} to the folder "
                                f"holding the data sets (orl/, caltech_faces/, ...)")
    return root / subset if subset else root
