"""pytorch-metric-learning as a second, independent oracle where it has the same loss.

Convention differences, and how each check bridges them:
- PML keeps class vectors as W of shape (d, C); faceid as `weight` (C, d): we copy the transpose.
- PML's ArcFace margin is in degrees (28.6 ≈ 0.5 rad) and has no fallback past θ + m > π; the
  batches here stay below that boundary.
- PML's NormalizedSoftmax divides by a temperature: faceid's NormFace s = 1 / temperature.
- PML's contrastive loss is max(0, d − pos_margin) and max(0, neg_margin − d), not squared and
  not halved: we compare faceid against ½·(PML's per-pair losses)², averaged over all pairs.
- PML's semi-hard miner keeps every semi-hard triplet, FaceNet picks one negative per pair; on a
  batch where each anchor-positive pair has exactly one semi-hard negative and every other
  negative is easy, the two coincide.
"""

import math

import pytest
import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from faceid.losses import build_loss
from tests.losses.cases import batch

D, C = 8, 5


def _inputs(seed=0):
    x, y = batch(seed, per_class=4, classes=C, dim=D)
    return x, y


def _copy_weight(ours, theirs):
    with torch.no_grad():
        theirs.W.data = ours.weight.detach().T.clone().to(torch.float64)


def _below_arcface_boundary(loss, x, y, m):
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(loss.weight, dim=1).T
    theta = torch.acos(cos.gather(1, y[:, None]))
    assert (theta + m < math.pi).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_arcface(seed):
    x, y = _inputs(seed)
    ours = build_loss("arcface", D, C, s=32.0, m=0.5).double()
    theirs = losses.ArcFaceLoss(C, D, margin=math.degrees(0.5), scale=32.0)
    _copy_weight(ours, theirs)
    _below_arcface_boundary(ours, x, y, 0.5)
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_cosface(seed):
    x, y = _inputs(seed)
    ours = build_loss("cosface", D, C, s=30.0, m=0.35).double()
    theirs = losses.CosFaceLoss(C, D, margin=0.35, scale=30.0)
    _copy_weight(ours, theirs)
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-6)


def test_normface_is_normalized_softmax():
    x, y = _inputs(2)
    ours = build_loss("normface", D, C, s=20.0).double()
    theirs = losses.NormalizedSoftmaxLoss(C, D, temperature=1 / 20.0)
    _copy_weight(ours, theirs)
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-6)


def test_contrastive_per_pair():
    x, y = _inputs(3)
    margin = 1.1
    theirs = losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin)
    pairs = lmu.get_all_pairs_indices(y)
    parts = theirs.compute_loss(x, y, pairs, x, y)
    positive = parts["pos_loss"]["losses"]
    negative = parts["neg_loss"]["losses"]
    expected = (0.5 * positive.pow(2).sum() + 0.5 * negative.pow(2).sum()) / (len(positive) + len(negative))
    ours = build_loss("contrastive", D, C, margin=margin)
    assert ours(x, y).item() == pytest.approx(float(expected), rel=1e-6)


def _one_semihard_batch():
    """2 classes x 2 samples on a circle: each (a, p) has one semi-hard and one easy negative."""
    angles = torch.tensor([0.99, 2.54, 4.14, 5.62], dtype=torch.float64)
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    y = torch.tensor([0, 0, 1, 1])
    return x, y


def test_triplet_semihard_matches_the_semihard_miner_where_they_coincide():
    x, y = _one_semihard_batch()
    margin = 0.4
    distance = distances.LpDistance(normalize_embeddings=True, p=2, power=2)
    miner = miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=distance)
    triplets = miner(x, y)
    anchors_positives = {(int(a), int(p)) for a, p in zip(triplets[0], triplets[1], strict=True)}
    assert len(triplets[0]) == len(anchors_positives)  # one semi-hard negative per pair
    theirs = losses.TripletMarginLoss(margin=margin, distance=distance, reducer=reducers.MeanReducer())
    ours = build_loss("triplet", 2, 2, margin=margin)
    # every (a, p) of the batch has a semi-hard negative, so both average over the same triplets
    all_pairs = {(a, p) for a in range(4) for p in range(4) if a != p and y[a] == y[p]}
    assert anchors_positives == all_pairs
    assert ours(x, y).item() == pytest.approx(float(theirs(x, y, triplets)), rel=1e-6)


def test_triplet_all_matches_pml_over_all_triplets():
    x, y = _inputs(4)
    distance = distances.LpDistance(normalize_embeddings=True, p=2, power=2)
    theirs = losses.TripletMarginLoss(margin=0.2, distance=distance, reducer=reducers.MeanReducer())
    ours = build_loss("triplet", D, C, margin=0.2, mining="all")
    assert ours(x, y).item() == pytest.approx(theirs(x, y).item(), rel=1e-6)
