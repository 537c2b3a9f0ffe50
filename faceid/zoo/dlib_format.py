"""dlib's serialised face-recognition ResNet, read in pure Python (numpy), as a faceid backbone.

`read_dlib_network(path)` parses `dlib_face_recognition_resnet_model_v1.dat` (from the
`face_recognition_models` package: `pip install 'faceid[pretrained]'`) into a `DlibResNet` with its
weights; `convert_dlib_model(dat, checkpoint)` writes it as a faceid backbone checkpoint, with dlib's
preprocessing and alignment recorded. No dlib and no network access are needed.

The file format (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, loss.h, cuda/tensor.h):

- an integer is a control byte (0x80: negative, low 4 bits: byte count 1-8) and that many little-endian
  bytes; a bool is the character '0' or '1'; a string is its length (an integer) and its bytes; a float
  is a (mantissa, exponent) integer pair, mantissa * 2**exponent (exponents 32000/32001/32002 are
  +inf/-inf/NaN); a tensor is version 2, (num_samples, k, nr, nc) and k*nr*nc*num_samples little-endian
  float32s; an alias_tensor (a view into a layer's `params`) is version 1 and its four dimensions.
- the network nests from the output inward: `add_loss_layer` writes its version, its loss details and
  then its subnetwork; every `add_layer` writes its version, then its whole subnetwork, then its own layer
  details and training state (bools, tensors); `add_tag_layer` / `add_skip_layer` write a version and
  their subnetwork. So the file holds the versions of all wrappers outermost first, the input layer,
  then the layers' details from the input outward: it is parsed against the known layer chain of
  dlib's `anet_type` (the wrappers' kinds are not written in the file), and every layer's version string
  and hyper-parameters are checked on the way.
"""

import hashlib
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from faceid.backbones.dlib_resnet import BLOCKS, EMBEDDING_DIM, INPUT_SIZE, Affine, DlibResNet

MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
PACKAGE = "face_recognition_models"
INSTALL_HINT = "pip install 'faceid[pretrained]'"
BACKBONE = "dlib_resnet"
ALIGNMENT = "dlib_150"
LICENCE = "CC0-1.0 (face_recognition_models; models by Davis King, public domain / CC0 1.0 Universal)"
DLIB_AVERAGE = (122.782, 117.001, 104.298)  # input_rgb_image's mean colour, RGB; the input is (pixel - mean) / 256
_FLOAT_SPECIAL = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
_CONV_MODE, _FC_NO_BIAS = 0, 1


@dataclass
class DlibLayer:
    """One computational layer of the network, as read from the file."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    options: dict = field(default_factory=dict)


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
    """dlib's input normalisation, (pixel - average) / 256 per RGB channel, in faceid's `Preprocessing`
    convention (pixel/255 - mean) / std: mean = average/255, std = 256/255. Keys are Preprocessing's fields."""
    return {"input_size": INPUT_SIZE, "channel_order": "RGB", "mean": tuple(float(a) / 255.0 for a in average),
            "std": (256.0 / 255.0,) * 3}


# ----------------------------------------------------------------------------------------------------
# The primitive readers.


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.source, self.pos = data, source, 0

    def fail(self, message: str) -> ValueError:
        return ValueError(f"{self.source} is not a readable dlib network file: {message} "
                          f"(at byte {self.pos} of {len(self.data)})")

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"truncated while reading {what} ({count} bytes wanted)")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self, what: str, unsigned: bool = False) -> int:
        control = self.take(1, what)[0]
        negative, size = bool(control & 0x80), control & 0x0F
        if size == 0 or size > 8 or (negative and unsigned):
            self.pos -= 1
            raise self.fail(f"bad integer control byte 0x{control:02x} while reading {what}")
        value = int.from_bytes(self.take(size, what), "little")
        return -value if negative else value

    def real(self, what: str) -> float:
        if self.pos < len(self.data) and self.data[self.pos] & 0x70:
            raise self.fail(f"{what} uses dlib's old text float format, which is not supported")
        mantissa, exponent = self.integer(what), self.integer(what)
        if exponent in _FLOAT_SPECIAL:
            return _FLOAT_SPECIAL[exponent]
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError:
            raise self.fail(f"{what} overflows ({mantissa} * 2**{exponent})") from None

    def string(self, what: str, limit: int = 256) -> str:
        length = self.integer(what, unsigned=True)
        if length > limit:
            raise self.fail(f"implausible length {length} for {what}")
        return self.take(length, what).decode("latin-1")

    def boolean(self, what: str) -> bool:
        char = self.take(1, what)
        if char not in (b"0", b"1"):
            self.pos -= 1
            raise self.fail(f"bad bool {char!r} while reading {what}")
        return char == b"1"

    def version(self, what: str, allowed: tuple[int, ...]) -> int:
        start = self.pos
        value = self.integer(f"the version of {what}")
        if value not in allowed:
            self.pos = start
            raise self.fail(f"unexpected version {value} of {what} (expected {' or '.join(map(str, allowed))})")
        return value

    def dims(self, what: str) -> tuple[int, ...]:
        shape = tuple(self.integer(what) for _ in range(4))
        if any(d < 0 for d in shape):
            raise self.fail(f"negative dimensions {shape} in {what}")
        return shape

    def tensor(self, what: str) -> np.ndarray:
        self.version(what, (2,))
        shape = self.dims(what)
        count = math.prod(shape)
        raw = self.take(4 * count, f"the {count} floats of {what}")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, ...]:
        self.version(what, (1,))
        return self.dims(what)


def _slice(reader: _Reader, params: np.ndarray, offset: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    flat, size = params.reshape(-1), math.prod(shape)
    if offset + size > flat.size:
        raise reader.fail(f"{what} of shape {shape} does not fit in its layer's {flat.size} parameters")
    return flat[offset:offset + size].reshape(shape).copy()


# ----------------------------------------------------------------------------------------------------
# Layer details (each starts with a version string naming the layer type).


def _read_con(r: _Reader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag not in ("con_4", "con_5", "con_6"):
        raise r.fail(f"{name}: expected a con layer (con_4 to con_6), found {tag!r}")
    params = r.tensor(f"{name}'s params")
    filters_count = r.integer(f"{name}'s num_filters")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer(f"{name}'s geometry") for _ in range(6))
    filters, biases = r.alias(f"{name}'s filters"), r.alias(f"{name}'s biases")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.real(f"{name}'s {what} multiplier")
    use_bias = r.boolean(f"{name}'s use_bias") if tag in ("con_5", "con_6") else True
    use_relu = r.boolean(f"{name}'s use_relu") if tag == "con_6" else False
    weight = _slice(r, params, 0, filters, f"{name}'s filters")
    bias = _slice(r, params, weight.size, (filters[0],), f"{name}'s biases") if use_bias and math.prod(biases) \
        else np.zeros(filters[0], np.float32)
    options = {"num_filters": filters_count, "kernel": (nr, nc), "stride": (stride_y, stride_x),
               "padding": (pad_y, pad_x), "relu": use_relu}
    return DlibLayer("con", weight, bias, options)


def _read_affine(r: _Reader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag == "bn_con2":  # a batch-norm layer: dlib's affine_ folds it on load, and so do we
        params = r.tensor(f"{name}'s params")
        gamma_shape, beta_shape = r.alias(f"{name}'s gamma"), r.alias(f"{name}'s beta")
        for what in ("means", "invstds", "running_means", "running_variances"):
            stats = r.tensor(f"{name}'s {what}")
            if what == "running_means":
                running_means = stats.reshape(-1)
            elif what == "running_variances":
                running_variances = stats.reshape(-1)
        r.integer(f"{name}'s num_updates", unsigned=True)
        r.integer(f"{name}'s running_stats_window_size", unsigned=True)
        for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
            r.real(f"{name}'s {what} multiplier")
        eps = np.float32(r.real(f"{name}'s eps"))
        gamma = _slice(r, params, 0, gamma_shape, f"{name}'s gamma").reshape(-1)
        beta = _slice(r, params, gamma.size, beta_shape, f"{name}'s beta").reshape(-1)
        if not running_means.size == running_variances.size == gamma.size:
            raise r.fail(f"{name}: batch-norm statistics do not match its {gamma.size} channels")
        scale = gamma / np.sqrt(running_variances + eps)
        return DlibLayer("affine", scale.astype(np.float32), (beta - scale * running_means).astype(np.float32))
    if tag not in ("affine_", "affine_2"):
        raise r.fail(f"{name}: expected an affine or bn_con layer, found {tag!r}")
    params = r.tensor(f"{name}'s params")
    gamma_shape, beta_shape = r.alias(f"{name}'s gamma"), r.alias(f"{name}'s beta")
    mode = r.integer(f"{name}'s mode")
    disabled = r.boolean(f"{name}'s disabled flag") if tag == "affine_2" else False
    if mode != _CONV_MODE:
        raise r.fail(f"{name}: only CONV-mode (per-channel) affine layers are supported, found mode {mode}")
    if disabled:
        channels = gamma_shape[1]
        return DlibLayer("affine", np.ones(channels, np.float32), np.zeros(channels, np.float32))
    gamma = _slice(r, params, 0, gamma_shape, f"{name}'s gamma").reshape(-1)
    beta = _slice(r, params, gamma.size, beta_shape, f"{name}'s beta").reshape(-1)
    return DlibLayer("affine", gamma, beta)


def _read_relu(r: _Reader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag not in ("relu_", "relu_2"):
        raise r.fail(f"{name}: expected a relu layer, found {tag!r}")
    if tag == "relu_2" and r.boolean(f"{name}'s disabled flag"):
        raise r.fail(f"{name}: disabled relu layers are not supported")
    return DlibLayer("relu")


def _read_pool(r: _Reader, name: str, kind: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag != f"{kind}_2":
        raise r.fail(f"{name}: expected a {kind} layer ({kind}_2), found {tag!r}")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer(f"{name}'s geometry") for _ in range(6))
    return DlibLayer(kind, options={"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)})


def _read_fc(r: _Reader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag not in ("fc_2", "fc_3"):
        raise r.fail(f"{name}: expected an fc layer, found {tag!r}")
    outputs, inputs = r.integer(f"{name}'s num_outputs"), r.integer(f"{name}'s num_inputs")
    params = r.tensor(f"{name}'s params")
    weights_shape, _ = r.alias(f"{name}'s weights"), r.alias(f"{name}'s biases")
    bias_mode = r.integer(f"{name}'s bias mode")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        r.real(f"{name}'s {what} multiplier")
    if tag == "fc_3":
        r.boolean(f"{name}'s use_bias")
    if bias_mode != _FC_NO_BIAS:
        raise r.fail(f"{name}: expected fc_no_bias (bias mode {_FC_NO_BIAS}), found bias mode {bias_mode}")
    if math.prod(weights_shape) != inputs * outputs:
        raise r.fail(f"{name}: weights of shape {weights_shape} for {inputs} inputs and {outputs} outputs")
    # dlib computes output = input (N, inputs) x weights (inputs, outputs); torch's Linear holds the transpose
    weight = _slice(r, params, 0, (inputs, outputs), f"{name}'s weights").T.copy()
    return DlibLayer("fc", weight, options={"outputs": outputs, "inputs": inputs})


def _read_add_prev(r: _Reader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag != "add_prev_":
        raise r.fail(f"{name}: expected an add_prev layer, found {tag!r}")
    return DlibLayer("add_prev")


_DETAIL_READERS = {"con": _read_con, "affine": _read_affine, "relu": _read_relu, "fc": _read_fc,
                   "add_prev": _read_add_prev, "max_pool": lambda r, n: _read_pool(r, n, "max_pool"),
                   "avg_pool": lambda r, n: _read_pool(r, n, "avg_pool")}


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


def _check_options(r: _Reader, name: str, layer: DlibLayer, expected: dict) -> None:
    options = dict(expected)
    if "stride" in options:  # dlib's default padding: none for strided layers, half the kernel otherwise
        pairs = zip(options["kernel"], options["stride"], strict=True)
        options["padding"] = tuple(0 if stride != 1 else kernel // 2 for kernel, stride in pairs)
    for key, value in options.items():
        if layer.options.get(key) != value:
            raise r.fail(f"{name}: {key} is {layer.options.get(key)}, dlib's face ResNet has {value}")
    if layer.options.get("relu"):
        raise r.fail(f"{name}: con layers with a fused relu are not supported")


def _parse(r: _Reader) -> DlibNetwork:
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
        layer = _DETAIL_READERS[kind](r, name)
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
    reader = _Reader(path.read_bytes(), str(path))
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

    The checkpoint's extra keys: `preprocessing` (dlib's normalisation as faceid `Preprocessing` fields),
    `alignment` ("dlib_150": dlib.get_face_chip(img, shape_5, size=150, padding=0.25) chips), `source`
    (file name, sha256, licence)."""
    from faceid.embedding import save_backbone_checkpoint

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
