"""dlib's face ResNet, converted: the pure-Python reader, the checkpoint, and parity with dlib itself.

The parity test uses dlib as the oracle on real faces from ../shared/data; it and the tests that need the
.dat skip, saying why, when dlib, face_recognition_models or the data are missing.
"""

import importlib.util
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceid.backbones import build_backbone
from faceid.backbones.dlib_resnet import DlibResNet, add_zero_padded
from faceid.checkpoint import CHECKPOINT_FORMAT
from faceid.model_input import ModelInput
from faceid.torch_embedder import TorchEmbedder
from faceid.zoo import dlib_format, dlib_layers
from faceid.zoo.dlib_format import (
    convert_dlib_model,
    dlib_model_file,
    dlib_preprocessing,
    parse_dlib_network,
    read_dlib_network,
)
from faceid.zoo.dlib_serialization import DlibReader

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
MAX_ABS_DIFF, MIN_COSINE = 1e-4, 0.99999


@pytest.fixture(scope="module")
def dat_file() -> Path:
    if importlib.util.find_spec("face_recognition_models") is None:
        pytest.skip("face_recognition_models is not installed (pip install 'faceid[pretrained]')")
    return dlib_model_file()


@pytest.fixture(scope="module")
def model(dat_file) -> DlibResNet:
    return read_dlib_network(dat_file)


def test_reader_consumes_the_whole_file_and_finds_the_architecture(dat_file):
    network = parse_dlib_network(dat_file)
    assert network.bytes_read == dat_file.stat().st_size
    kinds = [layer.kind for layer in network.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert kinds.count("add_prev") == 14 and kinds[:4] == ["con", "affine", "relu", "max_pool"]
    assert network.input_size == (150, 150)
    assert network.input_average == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    assert network.loss["type"].startswith("loss_metric")


def test_module_shape_and_size(model):
    assert sum(p.numel() for p in model.parameters()) == 5_614_592
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 150, 150))
    assert out.shape == (2, 128) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"\(N, 3, 150, 150\)"):
        model(torch.zeros(1, 3, 112, 112))


def test_registered_backbone_needs_dlibs_shape():
    assert isinstance(build_backbone("dlib_resnet", 128, 150), DlibResNet)
    with pytest.raises(ValueError, match="needs embedding_dim=128 and input_size=150"):
        build_backbone("dlib_resnet")  # build_backbone's defaults: 512-d, 112 px
    with pytest.raises(ValueError, match="needs embedding_dim=128 and input_size=150"):
        build_backbone("dlib_resnet", 128, 112)


def test_add_prev_zero_pads_at_the_end():
    a = torch.arange(2 * 3 * 3, dtype=torch.float32).reshape(1, 2, 3, 3)
    b = torch.ones(1, 1, 4, 4)
    out = add_zero_padded(a, b)
    assert out.shape == (1, 2, 4, 4)
    assert torch.equal(out[0, 0, :3, :3], a[0, 0] + 1) and torch.equal(out[0, 1, :3, :3], a[0, 1])
    assert torch.equal(out[0, 0, 3], torch.ones(4)) and torch.equal(out[0, 1, 3], torch.zeros(4))


def test_checkpoint_records_weights_preprocessing_and_alignment(dat_file, model, tmp_path):
    path = convert_dlib_model(dat_file, tmp_path / "dlib_resnet.pt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["backbone"] == "dlib_resnet"
    assert (checkpoint["embedding_dim"], checkpoint["input_size"]) == (128, 150)
    assert checkpoint["alignment"] == "dlib_150"
    assert checkpoint["source"]["file"] == dat_file.name and "CC0" in checkpoint["source"]["licence"]
    preprocessing = ModelInput(**checkpoint["preprocessing"])
    assert preprocessing.channel_order == "RGB" and preprocessing.std == pytest.approx((256 / 255,) * 3)
    assert np.array(preprocessing.mean) * 255 == pytest.approx([122.782, 117.001, 104.298], abs=1e-4)
    # faceid's (pixel/255 - mean)/std is dlib's (pixel - average)/256
    pixels = np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8)
    dlib_input = (pixels.astype(np.float64) - [122.782, 117.001, 104.298]) / 256
    assert np.abs(preprocessing.apply(pixels) - dlib_input.transpose(0, 3, 1, 2)).max() < 1e-5
    loaded = build_backbone("dlib_resnet", 128, 150)
    loaded.load_state_dict(checkpoint["state_dict"])
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert TorchEmbedder.from_checkpoint(path, device="cpu").embedding_dim == 128


def test_missing_package_names_the_pretrained_extra(monkeypatch):
    monkeypatch.setattr(dlib_format.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'faceid\[pretrained\]'"):
        dlib_model_file()


def test_damaged_files_are_a_value_error_naming_the_file(dat_file, tmp_path):
    data = dat_file.read_bytes()
    damaged = {f"cut{size}.dat": data[:size] for size in (0, 1, 5, 300, 1000, len(data) // 2, len(data) - 1)}
    rng = np.random.default_rng(0)
    damaged.update({f"random{seed}.dat": rng.bytes(5000) for seed in range(5)})
    damaged["random_after_header.dat"] = data[:400] + rng.bytes(5000)
    damaged["renamed_layer.dat"] = data.replace(b"relu_", b"relX_", 1)
    for name, content in damaged.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=f"{name} is not a readable dlib network file") as error:
            parse_dlib_network(path)
        assert not isinstance(error.value.__cause__, IndexError)
    with pytest.raises(ValueError, match="expected a relu layer"):
        parse_dlib_network(tmp_path / "renamed_layer.dat")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_dlib_network(tmp_path / "absent.dat")


def test_random_bytes_without_the_model(tmp_path):
    path = tmp_path / "noise.dat"
    path.write_bytes(np.random.default_rng(1).bytes(100_000))
    with pytest.raises(ValueError, match="noise.dat is not a readable dlib network file"):
        parse_dlib_network(path)


# ----------------------------------------------------------------------------------------------------
# Parity with dlib.


def _chips(dlib, models: Path) -> tuple[list[np.ndarray], int]:
    """150x150 RGB chips cut by dlib itself, 20 ORL faces (grayscale) and 20 Caltech faces, and how many
    images the detector found no face in (their whole image is the face box)."""
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    orl = [DATA / "orl" / f"s{person}" / "1.pgm" for person in range(1, 21)]
    caltech = sorted((DATA / "caltech_faces").glob("*.jpg"))[::21][:20]
    chips, undetected = [], 0
    for path in orl + caltech:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert image is not None, path
        image = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))  # ORL's gray comes out as R=G=B
        faces = detector(image, 1 if path.suffix == ".pgm" else 0)
        box = max(faces, key=lambda r: r.area()) if len(faces) else \
            dlib.rectangle(0, 0, image.shape[1] - 1, image.shape[0] - 1)  # ORL is tightly cropped
        undetected += not len(faces)
        chips.append(np.asarray(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25)))
    return chips, undetected


def test_parity_with_dlib(dat_file, tmp_path):
    dlib = pytest.importorskip("dlib", reason="dlib (the parity oracle) is not installed")
    if not (DATA / "orl").is_dir() or not (DATA / "caltech_faces").is_dir():
        pytest.skip(f"real face data not found at {DATA.resolve()} (orl/ and caltech_faces/)")
    chips, undetected = _chips(dlib, dat_file.parent)
    assert len(chips) == 40 and all(chip.shape == (150, 150, 3) and chip.dtype == np.uint8 for chip in chips)
    oracle = dlib.face_recognition_model_v1(str(dat_file))
    expected = np.array([np.array(oracle.compute_face_descriptor(chip)) for chip in chips])

    checkpoint = torch.load(convert_dlib_model(dat_file, tmp_path / "dlib.pt"), map_location="cpu", weights_only=True)
    model = build_backbone("dlib_resnet", 128, 150)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    batch = torch.from_numpy(ModelInput(**checkpoint["preprocessing"]).apply(np.stack(chips)))
    with torch.no_grad():
        start = time.perf_counter()
        ours = model(batch[:32]).double().numpy()
        seconds = time.perf_counter() - start
        ours = np.concatenate([ours, model(batch[32:]).double().numpy()])

    max_diff = float(np.abs(ours - expected).max())
    cosine = (ours * expected).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(expected, axis=1)
    norms = np.linalg.norm(expected, axis=1)
    print(f"\ndlib parity over {len(chips)} chips ({undetected} without a detection): max |diff| {max_diff:.3g}, "
          f"min cosine {cosine.min():.9f} (1 - cosine <= {1 - cosine.min():.2g}), descriptor norms "
          f"{norms.min():.3f}-{norms.max():.3f}; float32 forward of 32 chips on CPU: {seconds:.2f} s "
          f"({torch.get_num_threads()} threads)")
    assert max_diff <= MAX_ABS_DIFF
    assert cosine.min() >= MIN_COSINE
    # and the descriptors still tell people apart: chips of different people are farther than dlib's 0.6
    distances = np.linalg.norm(ours[:20, None] - ours[None, :20], axis=2)[~np.eye(20, dtype=bool)]
    print(f"distances between the 20 ORL people: min {distances.min():.3f}, median {np.median(distances):.3f}")
    assert distances.min() > 0.3


def test_default_preprocessing_is_dlibs():
    assert dlib_preprocessing()["mean"] == pytest.approx((122.782 / 255, 117.001 / 255, 104.298 / 255))


# ----------------------------------------------------------------------------------------------------
# The primitive encodings and the layer versions the shipped file does not use, on hand-made bytes.


def _int(value: int) -> bytes:
    """dlib's integer encoding (serialize.h pack_int)."""
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def _float(value: float) -> bytes:  # exact for the dyadic values used here
    mantissa, exponent = float(value).as_integer_ratio()
    return _int(mantissa) + _int(-(exponent.bit_length() - 1))


def _str(text: str) -> bytes:
    return _int(len(text)) + text.encode()


def _tensor(values: np.ndarray) -> bytes:
    shape = (1, values.size, 1, 1)
    return _int(2) + b"".join(map(_int, shape)) + values.astype("<f4").tobytes()


def _alias(*shape: int) -> bytes:
    return _int(1) + b"".join(map(_int, shape))


def _reader(data: bytes):
    return DlibReader(data, "handmade.dat")


def test_primitive_encodings():
    data = _int(0) + _int(-300) + _int(2**40) + _float(0.75) + _float(-3.0) + _int(0) + _int(32000) + _str("abc") + b"1"
    r = _reader(data)
    assert [r.integer("a"), r.integer("b"), r.integer("c")] == [0, -300, 2**40]
    assert [r.real("d"), r.real("e"), r.real("inf")] == [0.75, -3.0, float("inf")]
    assert r.string("f") == "abc" and r.boolean("g") is True and r.pos == len(data)
    with pytest.raises(ValueError, match="bad integer control byte 0x80"):
        _reader(b"\x80").integer("x")
    with pytest.raises(ValueError, match="truncated while reading the 6 floats of t"):
        _reader(_int(2) + b"".join(map(_int, (1, 6, 1, 1))) + b"\0" * 8).tensor("t")


def test_batch_norm_layers_fold_like_dlibs_affine():
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 0.25])
    means, variances, eps = np.array([0.5, 1.0, -2.0]), np.array([4.0, 0.25, 1.0]), 2.0**-10
    layer = (_str("bn_con2") + _tensor(np.concatenate([gamma, beta])) + _alias(1, 3, 1, 1) + _alias(1, 3, 1, 1)
             + _tensor(np.zeros(3)) + _tensor(np.zeros(3)) + _tensor(means) + _tensor(variances)
             + _int(100) + _int(1000) + _float(1) + _float(1) + _float(1) + _float(0) + _float(eps))
    r = _reader(layer)
    folded = dlib_layers._read_affine(r, "bn")
    scale = gamma / np.sqrt(variances + eps)
    assert r.pos == len(layer)
    assert folded.weight == pytest.approx(scale, rel=1e-6)
    assert folded.bias == pytest.approx(beta - scale * means, rel=1e-6)
    disabled = _str("affine_2") + _tensor(np.zeros(0)) + _alias(1, 3, 1, 1) + _alias(1, 3, 1, 1) + _int(0) + b"1"
    identity = dlib_layers._read_affine(_reader(disabled), "affine")
    assert identity.weight.tolist() == [1, 1, 1] and identity.bias.tolist() == [0, 0, 0]
    fc_mode = _str("affine_") + _tensor(np.ones(6)) + _alias(1, 3, 1, 1) + _alias(1, 3, 1, 1) + _int(1)
    with pytest.raises(ValueError, match="only CONV-mode"):
        dlib_layers._read_affine(_reader(fc_mode), "affine")
