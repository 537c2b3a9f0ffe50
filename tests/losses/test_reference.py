"""Each loss against its naive reference, in float64, to 1e-6 relative error; plus gradchecks."""

import math

import pytest
import torch
from torch.func import functional_call

from faceid.losses import available_losses, build_loss
from tests.losses.cases import ALL, CASES, C, D, batch, randomise


def test_every_registered_loss_has_a_reference_case():
    assert set(available_losses()) == set(CASES)


def _built(name, hyperparameters):
    return randomise(build_loss(name, embedding_dim=D, num_classes=C, **hyperparameters).double())


@pytest.mark.parametrize("case", sorted(ALL))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(case, seed):
    name, hyperparameters, reference = ALL[case]
    loss = _built(name, hyperparameters).eval()
    x, y = batch(seed)
    value = loss(x, y)
    expected = reference(loss, x, y)
    assert value.dim() == 0 and value.dtype == torch.float64
    assert value.detach().item() == pytest.approx(expected.detach().item(), rel=1e-6, abs=1e-12)


def test_arcface_fallback_beyond_pi_is_continuous_and_decreasing():
    loss = build_loss("arcface", embedding_dim=2, num_classes=1, s=1.0, m=0.5).double()
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0]]))
    thetas = torch.linspace(0.01, math.pi - 0.01, 400, dtype=torch.float64)
    target = loss.target_margin(torch.cos(thetas))
    assert (target.diff() < 0).all()
    boundary = math.pi - 0.5
    below, above = loss.target_margin(torch.tensor([math.cos(boundary - 1e-6), math.cos(boundary + 1e-6)],
                                                   dtype=torch.float64))
    assert float(below) == pytest.approx(-1.0, abs=1e-5) and float(above) == pytest.approx(-1.0, abs=1e-5)


def test_combined_margin_equals_arcface_and_cosface():
    x, y = batch(3)
    arc = _built("arcface", {"s": 16.0, "m": 0.3})
    cos = _built("cosface", {"s": 16.0, "m": 0.2})
    combined_arc = build_loss("combined", D, C, s=16.0, m1=1.0, m2=0.3, m3=0.0).double()
    combined_cos = build_loss("combined", D, C, s=16.0, m1=1.0, m2=0.0, m3=0.2).double()
    combined_arc.load_state_dict(arc.state_dict())
    combined_cos.load_state_dict(cos.state_dict())
    assert torch.allclose(arc(x, y), combined_arc(x, y), rtol=1e-12)
    assert torch.allclose(cos(x, y), combined_cos(x, y), rtol=1e-12)


def test_sphereface_lambda_anneals_once_per_training_forward():
    loss = build_loss("sphereface", D, C).double()
    x, y = batch(0)
    assert loss.current_lambda() == 1000.0
    loss.train()
    loss(x, y)
    loss(x, y)
    assert int(loss.iteration) == 2
    assert loss.current_lambda() == pytest.approx(1000 / (1 + 0.24))
    loss.eval()
    loss(x, y)
    assert int(loss.iteration) == 2
    loss.iteration.fill_(10**6)
    assert loss.current_lambda() == 5.0


def test_center_ema_follows_wens_rule():
    loss = build_loss("center", D, C, center_update="ema", center_alpha=0.5).double().train()
    x, y = batch(0)
    before = loss.centers.detach().clone()
    loss(x, y)
    for j in range(C):
        members = x[y == j]
        delta = (before[j] - members).sum(0) / (1 + len(members))
        assert torch.allclose(loss.centers[j], before[j] - 0.5 * delta)
    assert not loss.centers.requires_grad


def test_lace_precision_is_positive_definite_and_needs_no_decomposition():
    loss = _built("lace", {})
    # The whitened inner product [Mᵀa; √ε a]·[Mᵀb; √ε b] must equal aᵀ(MMᵀ + εI)b, a positive-definite form.
    with torch.no_grad():
        loss.whitening.copy_(torch.randn(D, D, dtype=loss.whitening.dtype))
    precision = loss.whitening @ loss.whitening.T + loss.eps * torch.eye(D, dtype=loss.whitening.dtype)
    assert torch.linalg.eigvalsh(precision).min() > 0
    a, b = torch.randn(3, D, dtype=precision.dtype), torch.randn(4, D, dtype=precision.dtype)
    assert torch.allclose(loss.whiten(a) @ loss.whiten(b).T, a @ precision @ b.T, atol=1e-8)
    assert loss.background_mean().shape == (D,)
    plain = build_loss("lace", D, C, use_cov=False)
    assert torch.equal(plain.whiten(a.float()), a.float())


def test_ncm_anchors_are_unit_and_maximally_separated():
    loss = build_loss("ncm", embedding_dim=8, num_classes=5)
    anchors = loss.anchors.double()
    assert torch.allclose(anchors.norm(dim=1), torch.ones(5, dtype=torch.float64), atol=1e-6)
    cosines = anchors @ anchors.T
    off_diagonal = cosines[~torch.eye(5, dtype=torch.bool)]
    assert torch.allclose(off_diagonal, torch.full_like(off_diagonal, -1 / 4), atol=1e-6)  # regular simplex
    many = build_loss("ncm", embedding_dim=4, num_classes=12).anchors
    many_cos = (many @ many.T)[~torch.eye(12, dtype=torch.bool)]
    random = torch.nn.functional.normalize(torch.randn(12, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    assert many_cos.max() < (random @ random.T)[~torch.eye(12, dtype=torch.bool)].max()
    assert not any(p.requires_grad for p in loss.parameters())


def _gradcheck(loss, x, y):
    names = [n for n, p in loss.named_parameters() if p.requires_grad]
    values = [p.detach().clone().requires_grad_(True) for n, p in loss.named_parameters() if p.requires_grad]
    buffers = dict(loss.named_buffers())

    def function(embeddings, *parameters):
        return functional_call(loss, {**dict(zip(names, parameters, strict=True)), **buffers}, (embeddings, y))

    return torch.autograd.gradcheck(function, (x.clone().requires_grad_(True), *values), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("case", sorted(ALL))
def test_gradcheck(case):
    name, hyperparameters, _ = ALL[case]
    loss = _built(name, hyperparameters).eval()
    x, y = batch(5, per_class=2)
    assert _gradcheck(loss, x, y)
