"""Degenerate batches, bad input, dtypes, devices and autocast, for every loss."""

import pytest
import torch

from faceid.losses import available_losses, build_loss
from tests.losses.cases import C, D, batch

# Batches holding no usable pair or triplet, where the loss must be exactly zero.
ZERO_WHEN_NO_PAIR = {
    "contrastive": {"batch-of-one"},
    "triplet": {"single-identity", "all-different", "batch-of-one", "duplicates-same-label"},
}


def _degenerate_batches():
    x, _ = batch(0, per_class=2)
    yield "single-identity", x, torch.zeros(len(x), dtype=torch.long)
    yield "all-different", x[:C], torch.arange(C)
    yield "batch-of-one", x[:1], torch.tensor([2])
    duplicated = x[:1].repeat(6, 1)
    yield "duplicates-same-label", duplicated, torch.zeros(6, dtype=torch.long)
    yield "duplicates-mixed-labels", duplicated, torch.tensor([0, 0, 1, 1, 2, 2])


@pytest.mark.parametrize("name", available_losses())
@pytest.mark.parametrize("kind, x, y", list(_degenerate_batches()), ids=lambda v: v if isinstance(v, str) else "")
def test_degenerate_batches_give_finite_values_and_gradients(name, kind, x, y):
    loss = build_loss(name, D, C).double().train()
    x = x.clone().requires_grad_(True)
    value = loss(x, y)
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(x.grad).all()
    for parameter in loss.parameters():
        if parameter.grad is not None:
            assert torch.isfinite(parameter.grad).all()
    if kind in ZERO_WHEN_NO_PAIR.get(name, ()):
        assert value.item() == 0.0


@pytest.mark.parametrize("name", ["arcface", "triplet", "lace", "range"])
def test_bad_input_names_what_is_wrong(name):
    loss = build_loss(name, D, C)
    x, y = batch(0, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\), got 7"):
        loss(x, torch.where(y == 3, 7, y))
    with pytest.raises(ValueError, match=r"got -1"):
        loss(x, torch.where(y == 3, -1, y))
    with pytest.raises(ValueError, match=r"shape \(B>=1, 6\), got \(12, 5\)"):
        loss(x[:, :5], y)
    with pytest.raises(ValueError, match=r"labels must have shape \(12,\)"):
        loss(x, y[:5])
    with pytest.raises(ValueError, match="integer tensor"):
        loss(x, y.float())
    bad = x.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="row 3 holds nan"):
        loss(bad, y)
    bad[3, 2] = float("inf")
    with pytest.raises(ValueError, match="row 3 holds inf"):
        loss(bad, y)


def test_unknown_names_and_hyperparameters_list_the_valid_ones():
    with pytest.raises(ValueError, match="available: amsoftmax, arcface"):
        build_loss("arcfase", D, C)
    with pytest.raises(ValueError, match=r"valid: \['s', 'm'\]"):
        build_loss("arcface", D, C, margin=0.5)
    with pytest.raises(ValueError, match="classification loss"):
        build_loss("triplet+center", D, C)
    with pytest.raises(ValueError, match="auxiliary term"):
        build_loss("arcface+focal", D, C)


def test_a_name_both_parts_take_needs_a_prefix(monkeypatch):
    from faceid.losses.registry import AUX_TERMS
    from faceid.losses.terms import RangeTerm

    class ScaledRange(RangeTerm):
        def __init__(self, embedding_dim, num_classes=None, s: float = 1.0):
            super().__init__(embedding_dim, num_classes)
            self.s = s

    monkeypatch.setitem(AUX_TERMS._entries, "scaled_range", ScaledRange)
    with pytest.raises(ValueError, match="write main_s or aux_s"):
        build_loss("normface+scaled_range", D, C, s=3.0)
    loss = build_loss("normface+scaled_range", D, C, main_s=3.0, aux_s=2.0)
    assert loss.main.s.item() == 3.0 and loss.aux.s == 2.0


def test_prefixed_hyperparameters_reach_their_part():
    loss = build_loss("coco+range", D, C, main_alpha=3.0, aux_margin=7.0, aux_weight=0.2)
    assert loss.main.alpha == 3.0 and loss.aux.margin == 7.0 and loss.aux_weight == 0.2


@pytest.mark.parametrize("name", available_losses())
def test_float32_agrees_with_float64(name):
    torch.manual_seed(0)
    loss64 = build_loss(name, D, C).double().eval()
    loss32 = build_loss(name, D, C).float().eval()
    loss32.load_state_dict({k: v.clone() for k, v in loss64.state_dict().items()})
    x, y = batch(1)
    value32 = loss32(x.float(), y)
    assert value32.dtype == torch.float32
    assert value32.item() == pytest.approx(loss64(x, y).item(), rel=1e-4, abs=1e-5)


@pytest.mark.parametrize("name", available_losses())
def test_autocast_runs_the_loss_math_in_float32(name):
    loss = build_loss(name, D, C).eval()
    x, y = batch(2, dtype=torch.float32)
    expected = loss(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = loss(x.bfloat16(), y)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected.item(), rel=0.05, abs=0.02)  # bf16 inputs, fp32 math


@pytest.mark.parametrize("name", ["softmax", "arcface", "lace", "triplet", "range", "lgm", "sphereface"])
def test_logits_shape_where_the_loss_classifies(name):
    loss = build_loss(name, D, C)
    x, _ = batch(0, dtype=torch.float32)
    if name == "triplet":
        assert not hasattr(loss, "logits")
    else:
        assert loss.logits(x).shape == (len(x), C)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
@pytest.mark.parametrize("name", available_losses())
def test_cuda_matches_cpu(name):
    loss = build_loss(name, D, C).eval()
    x, y = batch(3, dtype=torch.float32)
    expected = loss(x, y).item()
    cuda_loss = loss.cuda()
    value = cuda_loss(x.cuda(), y.cuda())
    value.backward()
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    with torch.autocast("cuda", dtype=torch.float16):
        assert cuda_loss(x.cuda().half(), y.cuda()).dtype == torch.float32
