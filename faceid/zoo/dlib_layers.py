"""The layers of dlib's face ResNet as they are serialised (dlib/dnn/layers.h): each reader takes
the version string naming the layer type and the layer's details, and returns a `DlibLayer`."""

import math
from dataclasses import dataclass, field

import numpy as np

from faceid.zoo.dlib_serialization import DlibReader

_CONV_MODE, _FC_NO_BIAS = 0, 1


@dataclass
class DlibLayer:
    """One computational layer of the network, as read from the file."""

    kind: str  # con, affine, relu, max_pool, avg_pool, add_prev, fc, tag, skip
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None
    options: dict = field(default_factory=dict)



def _slice(reader: DlibReader, params: np.ndarray, offset: int, shape: tuple[int, ...], what: str) -> np.ndarray:
    flat, size = params.reshape(-1), math.prod(shape)
    if offset + size > flat.size:
        raise reader.fail(f"{what} of shape {shape} does not fit in its layer's {flat.size} parameters")
    return flat[offset:offset + size].reshape(shape).copy()


# ----------------------------------------------------------------------------------------------------
# Layer details (each starts with a version string naming the layer type).


def _read_con(r: DlibReader, name: str) -> DlibLayer:
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


def _read_affine(r: DlibReader, name: str) -> DlibLayer:
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


def _read_relu(r: DlibReader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag not in ("relu_", "relu_2"):
        raise r.fail(f"{name}: expected a relu layer, found {tag!r}")
    if tag == "relu_2" and r.boolean(f"{name}'s disabled flag"):
        raise r.fail(f"{name}: disabled relu layers are not supported")
    return DlibLayer("relu")


def _read_pool(r: DlibReader, name: str, kind: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag != f"{kind}_2":
        raise r.fail(f"{name}: expected a {kind} layer ({kind}_2), found {tag!r}")
    nr, nc, stride_y, stride_x, pad_y, pad_x = (r.integer(f"{name}'s geometry") for _ in range(6))
    return DlibLayer(kind, options={"kernel": (nr, nc), "stride": (stride_y, stride_x), "padding": (pad_y, pad_x)})


def _read_fc(r: DlibReader, name: str) -> DlibLayer:
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


def _read_add_prev(r: DlibReader, name: str) -> DlibLayer:
    tag = r.string(f"{name}'s version")
    if tag != "add_prev_":
        raise r.fail(f"{name}: expected an add_prev layer, found {tag!r}")
    return DlibLayer("add_prev")


DETAIL_READERS = {"con": _read_con, "affine": _read_affine, "relu": _read_relu, "fc": _read_fc,
                   "add_prev": _read_add_prev, "max_pool": lambda r, n: _read_pool(r, n, "max_pool"),
                   "avg_pool": lambda r, n: _read_pool(r, n, "avg_pool")}
