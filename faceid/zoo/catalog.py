"""The catalog of known pretrained face-embedding models: where each comes from, how to check it,
under which licence it may be used, and what input it expects.

Checksums are sha256 of the file as downloaded (`sha256`) and, for an archive, of the model file
inside it (`member_sha256`); `None` where no trustworthy value is published. Preprocessing follows
faceid's convention: network input = (pixel / 255 - mean) / std per channel, after resizing the
aligned crop to `input_size` and ordering its channels as `channel_order`.
"""

from dataclasses import dataclass

ALIGNMENTS = ("arcface_112", "facenet_160", "dlib_150")
DEFAULT_MODEL = "dlib_resnet_v1"  # public domain, installed with the `pretrained` extra: nothing to download

# How `pull`/`import` turn the obtained file into the cached model file.
KINDS = {
    "facenet": "facenet-pytorch state dict, converted to a faceid inception_resnet_v1 checkpoint",
    "onnx_zip": "zip archive; the recognition ONNX model inside is extracted",
    "onnx": "ONNX model, used as is",
    "dlib": "dlib .dat from the face_recognition_models package, converted to a faceid checkpoint",
}


class ZooError(ValueError):
    """A model-zoo failure the user can act on (unknown name, licence, download, checksum)."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    title: str
    kind: str
    licence: str
    commercial_use: bool
    embedding_dim: int
    input_size: int
    channel_order: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    alignment: str
    figure: str
    source: str
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    member: str | None = None
    member_sha256: str | None = None
    upstream_file: str = ""  # what `pull` obtains and `import` takes, when not named by the URL
    notes: str = ""
    threshold: float | None = None  # default cosine decision threshold; None: calibrate before identifying
    threshold_basis: str = ""  # where `threshold` comes from: measured here (data, FAR, TAR) or published

    def default_threshold(self) -> dict | None:
        """The stored form of the model's default threshold (`gallery.threshold_policy`), or None."""
        if self.threshold is None:
            return None
        return {"threshold": self.threshold, "source": "model default", "model": self.name,
                "basis": self.threshold_basis}

    @property
    def suffix(self) -> str:
        return ".pt" if self.kind in ("facenet", "dlib") else ".onnx"

    @property
    def filename(self) -> str:
        """The cached model file's name: a faceid checkpoint (.pt) or an ONNX model."""
        return self.name + self.suffix

    @property
    def download_name(self) -> str:
        """The upstream file's name: what `pull` downloads and `faceid models import` expects."""
        return self.upstream_file or self.urls[0].rsplit("/", 1)[-1]

    def preprocessing(self) -> dict:
        """faceid's preprocessing description (`faceid.model_input.ModelInput.from_description` reads it)."""
        return {"input_size": self.input_size, "channel_order": self.channel_order,
                "mean": list(self.mean), "std": list(self.std)}

    def input_description(self) -> str:
        mean = [round(m * 255, 3) for m in self.mean]
        std = [round(s * 255, 3) for s in self.std]
        return f"{self.input_size}x{self.input_size} {self.channel_order}, (pixel - {mean}) / {std}"


_FACENET = dict(kind="facenet", licence="MIT",
                commercial_use=True, embedding_dim=512, input_size=160, channel_order="RGB",
                mean=(0.5, 0.5, 0.5), std=(128 / 255,) * 3, alignment="facenet_160",
                source="https://github.com/timesler/facenet-pytorch")
_INSIGHTFACE = dict(kind="onnx_zip", licence="non-commercial research only",
                    commercial_use=False, embedding_dim=512, input_size=112, channel_order="RGB",
                    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), alignment="arcface_112",
                    source="https://github.com/deepinsight/insightface/tree/master/model_zoo")
_INSIGHTFACE_NOTE = ("InsightFace: 'The pretrained models we provided with this library are available for "
                     "non-commercial research purposes only' (the library code itself is MIT)")
_DEEPFACE = "published by deepface (deepface/config/threshold.py, cosine distance {} -> similarity {})"
_RELEASES = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/"
_INSIGHTFACE_RELEASES = "https://github.com/deepinsight/insightface/releases/download/v0.7/"
_SFACE_FILE = "models/face_recognition_sface/face_recognition_sface_2021dec.onnx"

CATALOG: dict[str, ModelEntry] = {entry.name: entry for entry in (
    ModelEntry(
        name="dlib_resnet_v1", title="dlib face recognition ResNet v1 (29 conv layers)", kind="dlib",
        licence="public domain (CC0 1.0)", commercial_use=True, embedding_dim=128, input_size=150,
        channel_order="RGB", mean=(122.782 / 255, 117.001 / 255, 104.298 / 255), std=(256 / 255,) * 3,
        alignment="dlib_150", figure="LFW 99.38%", source="https://github.com/davisking/dlib-models",
        upstream_file="dlib_face_recognition_resnet_model_v1.dat",
        notes="no download: converted from the .dat file of the installed face_recognition_models package "
              "(pip install 'faceid[pretrained]')",
        threshold=0.9351, threshold_basis="measured by tools/measure_model_thresholds.py: chosen at FAR 1e-3 on 100 "
        "celeba_wild identities (seed 0); see docs/models.md for FAR and TAR on held-out data"),
    ModelEntry(
        name="facenet_vggface2", title="FaceNet InceptionResnetV1 trained on VGGFace2 (20180402-114759)",
        figure="LFW 99.65%", urls=(_RELEASES + "20180402-114759-vggface2.pt",),
        sha256="281cebca8662831adb987a874bdcb36e73f5b1c6dc5ee5878f305e985625d99b",
        notes="weights ported from davidsandberg/facenet (MIT); trained on VGGFace2: check that dataset's "
              "terms for your use", threshold=0.70, threshold_basis=_DEEPFACE.format(0.30, 0.70) + " for "
        "Facenet512, the same 20180402-114759 weights; not measured here (no download)", **_FACENET),
    ModelEntry(
        name="facenet_casia_webface", title="FaceNet InceptionResnetV1 trained on CASIA-WebFace (20180408-102900)",
        figure="LFW 99.05%", urls=(_RELEASES + "20180408-102900-casia-webface.pt",),
        notes="no published checksum: the download is not verified; weights ported from davidsandberg/facenet "
              "(MIT); trained on CASIA-WebFace, whose terms restrict it to non-commercial research", **_FACENET),
    ModelEntry(
        name="buffalo_l", title="InsightFace buffalo_l recognition: ArcFace ResNet50 on WebFace600K (w600k_r50)",
        figure="LFW 99.83%, IJB-C(E4) 97.25%", urls=(_INSIGHTFACE_RELEASES + "buffalo_l.zip",),
        sha256="80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f", member="w600k_r50.onnx",
        member_sha256="4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
        notes=_INSIGHTFACE_NOTE, threshold=0.45, threshold_basis=_DEEPFACE.format(0.55, 0.45) + " for "
        "Buffalo_L; not measured here (no download)", **_INSIGHTFACE),
    ModelEntry(
        name="buffalo_s", title="InsightFace buffalo_s recognition: ArcFace MobileFaceNet on WebFace600K (w600k_mbf)",
        figure="LFW 99.70%, IJB-C(E4) 95.02%", urls=(_INSIGHTFACE_RELEASES + "buffalo_s.zip",),
        sha256="d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e", member="w600k_mbf.onnx",
        member_sha256="9cc6e4a75f0e2bf0b1aed94578f144d15175f357bdc05e815e5c4a02b319eb4f",
        notes=_INSIGHTFACE_NOTE, **_INSIGHTFACE),
    ModelEntry(
        name="sface", title="OpenCV Zoo SFace (MobileFaceNet, SFace loss), face_recognition_sface_2021dec",
        kind="onnx", licence="Apache-2.0", commercial_use=True, embedding_dim=128, input_size=112,
        channel_order="RGB", mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3, alignment="arcface_112",
        figure="LFW 99.40%", source="https://github.com/opencv/opencv_zoo/tree/main/models/face_recognition_sface",
        urls=("https://media.githubusercontent.com/media/opencv/opencv_zoo/main/" + _SFACE_FILE,
              "https://huggingface.co/opencv/opencv_zoo/resolve/main/" + _SFACE_FILE),
        sha256="0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79",
        notes="takes raw 0-255 RGB values (OpenCV's FaceRecognizerSF: blobFromImage scale 1, swapRB)",
        threshold=0.363, threshold_basis="published by OpenCV Zoo (models/face_recognition_sface/demo.py, cosine "
        "similarity 0.363 on LFW); not measured here (no download)"),
)}


def known_models() -> list[ModelEntry]:
    return list(CATALOG.values())


def model_info(name: str) -> ModelEntry:
    if name not in CATALOG:
        raise ZooError(f"unknown model {name!r}; known models: {', '.join(CATALOG)} (see `faceid models list`)")
    return CATALOG[name]


def is_model_name(text: str) -> bool:
    return str(text) in CATALOG


def default_threshold_of(model) -> dict | None:
    """The stored form of `model`'s default threshold: a zoo model's (`ModelEntry.default_threshold`), None for a
    model file (a file named like a zoo model is a file) or a zoo model with none."""
    from pathlib import Path

    return model_info(str(model)).default_threshold() if is_model_name(model) and not Path(model).exists() else None
