"""The model zoo: known pretrained face-embedding models, downloaded, verified and cached.

    from faceid.zoo import pull, resolve
    path = pull("sface")               # $FACEID_HOME/models/sface/sface.onnx (+ sface.yaml beside it)
    path = resolve("facenet_vggface2") # the cached checkpoint, pulled first if needed

A model file is either a faceid backbone checkpoint (`.pt`) or an ONNX model whose preprocessing
description (`.yaml`, faceid's third-party format plus the alignment template) lies beside it.
See docs/models.md.
"""

from faceid.zoo.catalog import (
    DEFAULT_MODEL,
    ModelEntry,
    ZooError,
    default_threshold_of,
    is_model_name,
    known_models,
    model_info,
)
from faceid.zoo.store import cached_path, faceid_home, import_model, pull, remove_model, resolve

__all__ = ["DEFAULT_MODEL", "ModelEntry", "ZooError", "cached_path", "default_threshold_of", "faceid_home",
           "import_model", "is_model_name", "known_models", "model_info", "pull", "remove_model", "resolve"]
