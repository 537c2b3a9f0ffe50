"""dlib's serialised face-recognition ResNet, read in pure Python (numpy), as a faceid backbone.

`read_dlib_network(path)` parses `dlib_face_recognition_resnet_model_v1.dat` (from the
`face_recognition_models` package: `pip install 'faceid[pretrained]'`) into a `DlibResNet` with its
weights; `convert_dlib_model(dat, checkpoint)` writes it as a faceid backbone checkpoint, with dlib's
preprocessing and alignment recorded. No dlib and no network access are needed.

The file format (dlib/dnn/core.h, input.h, loss.h; primitives in `dlib_serialization`, layer details
in `dlib_layers`): the network nests from the output inward: `add_loss_layer` writes its version, its loss details and
  then its subnetwork; every `add_layer` writes its version, then its whole subnetwork, then its own layer
  details and training state (bools, tensors); `add_tag_layer` / `add_skip_layer` write a version and
  their subnetwork. So the file holds the versions of all wrappers outermost first, the input layer,
  then the layers' details from the input outward: it is parsed against the known layer chain of
  dlib's `anet_type` (the wrappers' kinds are not written in the file), and every layer's version string
  and hyper-parameters are checked on the way.
"""

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from faceid.backbones.dlib_resnet import BLOCKS, EMBEDDING_DIM, INPUT_SIZE, Affine, DlibResNet
from faceid.zoo.dlib_layers import DETAIL_READERS, DlibLayer
from faceid.zoo.dlib_serialization import DlibReader

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
PACKAGE = "face_recognition_models"
INSTALL_HINT = "pip install 'faceid[pretrained]'"
BACKBONE = "dlib_resnet"
ALIGNMENT = "dlib_150"
LICENCE = "CC0-1.0 (face_recognition_models; models by Davis King, public domain / CC0 1.0 Universal)"
DLIB_AVERAGE = (122.782, 117.001, 104.298)  # input_rgb_image's mean colour, RGB; the input is (pixel - mean) / 256


@dataclass
class DlibNetwork:
    """A parsed dlib network: its layers in forward order (input first) and its input/loss settings."""

    layers: list[DlibLayer]
    input_average: tuple[float, float, float]
    input_size: tuple[int, int] | None
    loss: dict
    bytes_read: int


def dlib_model_file() -> Path:
    """The path of dlib's face-recognition model inside the installed `face_recognition_models` package.

    The package is not imported (its __init__ needs pkg_resources); only its files are located."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"dlib's pretrained face model comes from the {PACKAGE} package, which is not "
                                  f"installed: {INSTALL_HINT}", name=PACKAGE)
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed {PACKAGE} package; reinstall it: "
                                f"{INSTALL_HINT}")
    return path


def dlib_preprocessing(average: tuple[float, float, float] = DLIB_AVERAGE) -> dict:
    """dlib's input normalisation, (pixel - average) / 256 per RGB channel, in faceid's `ModelInput`
    convention (pixel/255 - mean) / std: mean = average/255, std = 256/255. Keys are ModelInput's fields."""
    return {"input_size": INPUT_SIZE, "channel_order": "RGB", "mean": tuple(float(a) / 255.0 for a in average),
            "std": (256.0 / 255.0,) * 3}


# ----------------------------------------------------------------------------------------------------
# The primitive readers.


# ----------------------------------------------------------------------------------------------------
# The architecture: dlib's anet_type (examples/dnn_face_recognition_ex.cpp), from the output inward.


def anet_chain() -> list[tuple[str, dict]]:
    """The (kind, expected options) of every layer wrapper of dlib's `anet_type`, outermost first."""

    def block(filters: int, stride: int) -> list[tuple[str, dict]]:  # affine<con<relu<affine<con<...>>>>>
        return [("affine", {}), ("con", {"num_filters": filters, "kernel": (3, 3), "stride": (1, 1)}), ("relu", {}),
                ("affine", {}), ("con", {"num_filters": filters, "kernel": (3, 3), "stride": (stride, stride)})]

    def ares(filters: int) -> list[tuple[str, dict]]:  # relu<add_prev1<block<tag1<...>>>>
        return [("relu", {}), ("add_prev", {}), *block(filters, 1), ("tag", {})]

    def ares_down(filters: int) -> list[tuple[str, dict]]:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<...>>>
        return [("relu", {}), ("add_prev", {}), ("avg_pool", {"kernel": (2, 2), "stride": (2, 2)}), ("skip", {}),
                ("tag", {}), *block(filters, 2), ("tag", {})]

    chain: list[tuple[str, dict]] = [("fc", {"outputs": EMBEDDING_DIM}),
                                     ("avg_pool", {"kernel": (0, 0), "stride": (1, 1)})]
    for filters, down in reversed(BLOCKS):
        chain += ares_down(filters) if down else ares(filters)
    return chain + [("max_pool", {"kernel": (3, 3), "stride": (2, 2)}), ("relu", {}), ("affine", {}),
                    ("con", {"num_filters": 32, "kernel": (7, 7), "stride": (2, 2)})]


def _check_options(r: DlibReader, name: str, layer: DlibLayer, expected: dict) -> None:
    options = dict(expected)
    if "stride" in options:  # dlib's default padding: none for strided layers, half the kernel otherwise
        pairs = zip(options["kernel"], options["stride"], strict=True)
        options["padding"] = tuple(0 if stride != 1 else kernel // 2 for kernel, stride in pairs)
    for key, value in options.items():
        if layer.options.get(key) != value:
            raise r.fail(f"{name}: {key} is {layer.options.get(key)}, dlib's face ResNet has {value}")
    if layer.options.get("relu"):
        raise r.fail(f"{name}: con layers with a fused relu are not supported")


def _parse(r: DlibReader) -> DlibNetwork:
    r.version("the loss layer", (1,))
    loss_tag = r.string("the loss layer's version")
    if loss_tag == "loss_metric_2":
        loss = {"type": loss_tag, "margin": r.real("the loss margin"), "distance_threshold": r.real("the threshold")}
    elif loss_tag == "loss_metric_":
        loss = {"type": loss_tag, "margin": 0.1, "distance_threshold": 0.75}
    else:
        raise r.fail(f"expected dlib's metric-learning loss (loss_metric_), found {loss_tag!r}")

    chain = anet_chain()
    versions = []
    for index, (kind, _) in enumerate(chain):
        name = f"layer {index + 1} ({kind})"
        innermost = index == len(chain) - 1  # its subnetwork is the input layer
        allowed = (1,) if kind in ("tag", "skip") else (2, 3) if innermost else (1, 2)
        versions.append(r.version(name, allowed))

    input_tag = r.string("the input layer's version")
    if input_tag not in ("input_rgb_image", "input_rgb_image_sized", "input_rgb_image_pair"):
        raise r.fail(f"expected dlib's input_rgb_image layer, found {input_tag!r}")
    average = tuple(float(np.float32(r.real("the input layer's average colour"))) for _ in range(3))
    input_size = None
    if input_tag == "input_rgb_image_sized":
        input_size = (r.integer("the input rows", unsigned=True), r.integer("the input columns", unsigned=True))
        if input_size != (INPUT_SIZE, INPUT_SIZE):
            raise r.fail(f"the input layer takes {input_size} images, dlib's face ResNet {INPUT_SIZE}x{INPUT_SIZE}")

    layers = []
    for index in reversed(range(len(chain))):
        kind, expected = chain[index]
        name = f"layer {index + 1} ({kind})"
        if kind in ("tag", "skip"):  # nothing after their subnetwork
            layers.append(DlibLayer(kind))
            continue
        layer = DETAIL_READERS[kind](r, name)
        _check_options(r, name, layer, expected)
        for what in ("setup flag", "gradient_input_is_stale flag", "output/gradient-disabled flag"):
            r.boolean(f"{name}'s {what}")
        r.tensor(f"{name}'s x_grad")
        r.tensor(f"{name}'s cached output")
        if index == len(chain) - 1:
            r.tensor(f"{name}'s grad_final")
            if versions[index] >= 3:
                r.integer(f"{name}'s sample expansion factor")
        elif versions[index] == 2:
            r.tensor(f"{name}'s params_grad")
        layers.append(layer)
    return DlibNetwork(layers, average, input_size, loss, r.pos)


def parse_dlib_network(path: str | Path) -> DlibNetwork:
    """Parse dlib's serialised face ResNet (pure Python). ValueError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dlib network file {path} does not exist")
    reader = DlibReader(path.read_bytes(), str(path))
    try:
        return _parse(reader)
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise reader.fail(str(error)) from None
    except (IndexError, KeyError, TypeError, OverflowError, MemoryError) as error:  # a last line of defence
        raise reader.fail(f"{type(error).__name__}: {error}") from None


# ----------------------------------------------------------------------------------------------------
# Into PyTorch.


def network_to_module(network: DlibNetwork, source: str = "the dlib network") -> DlibResNet:
    """A DlibResNet holding the weights of a parsed network."""
    model = DlibResNet()
    weighted = [layer for layer in network.layers if layer.kind in ("con", "affine", "fc")]
    targets = model.weighted_layers()
    if len(weighted) != len(targets):
        raise ValueError(f"{source}: {len(weighted)} weighted layers, dlib_resnet has {len(targets)}")
    with torch.no_grad():
        for index, (layer, target) in enumerate(zip(weighted, targets, strict=True)):
            expected = {"con": torch.nn.Conv2d, "affine": Affine, "fc": torch.nn.Linear}[layer.kind]
            if not isinstance(target, expected) or tuple(target.weight.shape) != layer.weight.shape:
                raise ValueError(f"{source}: weighted layer {index} is a {layer.kind} of shape {layer.weight.shape}, "
                                 f"dlib_resnet expects {tuple(target.weight.shape)} ({type(target).__name__})")
            target.weight.copy_(torch.from_numpy(layer.weight))
            if target.bias is not None:
                if layer.bias is None or tuple(target.bias.shape) != layer.bias.shape:
                    shape = tuple(target.bias.shape)
                    raise ValueError(f"{source}: weighted layer {index} lacks a bias of shape {shape}")
                target.bias.copy_(torch.from_numpy(layer.bias))
    return model.eval()


def read_dlib_network(path: str | Path | None = None) -> DlibResNet:
    """dlib's face ResNet from its .dat file (default: the one in face_recognition_models), in eval mode."""
    path = Path(path) if path is not None else dlib_model_file()
    return network_to_module(parse_dlib_network(path), str(path))


def convert_dlib_model(dat_path: str | Path | None, checkpoint_path: str | Path) -> Path:
    """Convert dlib's .dat (None: the one in face_recognition_models) to a faceid backbone checkpoint.

    The checkpoint's extra keys: `preprocessing` (dlib's normalisation as faceid `ModelInput` fields),
    `alignment` ("dlib_150": dlib.get_face_chip(img, shape_5, size=150, padding=0.25) chips), `source`
    (file name, sha256, licence)."""
    from faceid.checkpoint import save_backbone_checkpoint

    dat_path = Path(dat_path) if dat_path is not None else dlib_model_file()
    network = parse_dlib_network(dat_path)
    model = network_to_module(network, str(dat_path))
    checkpoint_path = Path(checkpoint_path)
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    extra = {"preprocessing": dlib_preprocessing(network.input_average), "alignment": ALIGNMENT,
             "source": {"file": dat_path.name, "sha256": hashlib.sha256(dat_path.read_bytes()).hexdigest(),
                        "licence": LICENCE, "converter": "faceid.zoo.dlib_format"}}
    save_backbone_checkpoint(checkpoint_path, model, BACKBONE, EMBEDDING_DIM, INPUT_SIZE, extra=extra)
    return checkpoint_path
