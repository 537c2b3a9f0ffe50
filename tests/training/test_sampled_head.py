"""Sampled class centres (training.sampled_head): rate 1 against the unsampled heads, rate < 1 against a
naive loop reference built from the formula (one process and 2 gloo ranks), the sampling and its RNG,
optimiser state of unsampled rows through the trainer, exact resume, config checks, and accuracy on
the synthetic faces."""

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from faceid.config import ConfigError, load_config
from faceid.losses import build_loss
from faceid.training.benchmarks.head import head_benchmark_rows, print_head_table
from faceid.training.distributed import DistributedContext
from faceid.training.partial_fc import ShardedMarginHead
from faceid.training.sampled_head import SampledMarginHead, build_head
from faceid.training.trainer import Trainer
from tests.training.test_trainer import assert_resume_is_exact

BATCH, DIM, CLASSES, WORLD, S, M = 8, 12, 23, 2, 16.0, 0.5  # 23 classes: shards of 11 and 12
LABELS = torch.tensor([0, 4, 4, 13, 3, 20, 9, 13])  # targets in both shards, with repeats


def _inputs(name: str = "arcface"):
    torch.manual_seed(0)
    reference = build_loss(name, DIM, CLASSES, s=S, m=M if name == "arcface" else 0.3)
    return reference, torch.randn(BATCH, DIM), LABELS.clone()


def naive_sampled_loss(embeddings, labels, weight, sampled, s=S, m=M):
    """ArcFace over the classes `sampled` only, one sample and one class at a time (float64)."""
    total = 0.0
    for x, label in zip(embeddings.double(), labels.tolist(), strict=True):
        x = x / x.norm()
        logits, target = [], None
        for c in sampled:
            w = weight[c].double() / weight[c].double().norm()
            cos = (x * w).sum()
            if c == label:
                theta = torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
                logit = s * (torch.cos(theta + m) if theta <= math.pi - m else cos - math.cos(math.pi - m) - 1)
                target = logit
            else:
                logit = s * cos
            logits.append(logit)
        assert target is not None, "the target class must be sampled"
        total = total + torch.logsumexp(torch.stack(logits), 0) - target
    return total / len(labels)


def _reference_gradients(embeddings, labels, weight, sampled):
    x = embeddings.double().requires_grad_()
    w = weight.detach().double().requires_grad_()
    value = naive_sampled_loss(x, labels, w, sampled)
    value.backward()
    return value.detach(), x.grad, w.grad


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_rate_one_is_exactly_the_margin_loss(name):
    reference, embeddings, labels = _inputs(name)
    head = SampledMarginHead(reference, 1.0, seed=0)
    mine, theirs = embeddings.clone().requires_grad_(), embeddings.clone().requires_grad_()
    value, expected = head(mine, labels), reference(theirs, labels)
    value.backward()
    expected.backward()
    assert torch.equal(head.index, torch.arange(CLASSES))
    assert torch.equal(value, expected)
    assert torch.equal(head.active.grad, reference.weight.grad) and torch.equal(mine.grad, theirs.grad)


def test_sampled_loss_and_gradients_match_the_naive_reference():
    reference, embeddings, labels = _inputs()
    head = SampledMarginHead(reference, 0.3, seed=5)
    x = embeddings.clone().requires_grad_()
    value = head(x, labels)
    value.backward()
    sampled = head.index.tolist()
    assert len(sampled) == int(0.3 * CLASSES) and set(labels.tolist()) <= set(sampled)
    expected, x_grad, w_grad = _reference_gradients(embeddings, labels, reference.weight, sampled)
    torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad.double(), x_grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(head.active.grad.double(), w_grad[head.index], rtol=1e-4, atol=1e-5)
    assert w_grad[[c for c in range(CLASSES) if c not in sampled]].abs().max() == 0  # the reference agrees


def test_sampling_is_seeded_per_rank_and_draw_and_uniform_over_negatives():
    reference = _inputs()[0]

    def draws(seed, rank, count):
        head = SampledMarginHead(reference, 0.5, seed, rank=rank, world_size=2)
        return [head.sample(torch.tensor([0, 1, 1])).tolist() for _ in range(count)]

    first = draws(0, 0, 3)
    assert first == draws(0, 0, 3) and first[0] != first[1]
    assert first != draws(1, 0, 3) and first != draws(0, 1, 3)
    rows, count = 11, int(0.5 * 11)  # rank 0 holds 11 classes; positives 0 and 1 are always kept
    head = SampledMarginHead(reference, 0.5, seed=0, rank=0, world_size=2)
    hits = torch.zeros(rows)
    for _ in range(3000):
        index = head.sample(torch.tensor([1, 0]))
        assert len(index) == count and bool((index.diff() > 0).all()) and {0, 1} <= set(index.tolist())
        hits[index] += 1
    share = hits[2:] / 3000
    expected = (count - 2) / (rows - 2)
    assert (share - expected).abs().max() < 0.05, share  # binomial sd 0.009


def _sharded(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        reference, embeddings, labels = _inputs()
        rows = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        results = {}
        for name, head in (("unsampled", ShardedMarginHead(reference, rank, WORLD)),
                           ("rate1", SampledMarginHead(reference, 1.0, 0, rank, WORLD)),
                           ("rate04", SampledMarginHead(reference, 0.4, 0, rank, WORLD))):
            mine = embeddings[rows].clone().requires_grad_()
            value = head(mine, labels[rows])
            value.backward()
            weight_grad = head.weight.grad if name == "unsampled" else head.active.grad
            index = None if name == "unsampled" else head.index + head.start
            results[name] = {"value": value.detach(), "embeddings": mine.grad / WORLD, "weight": weight_grad,
                             "index": index}
        results["checkpoint"] = head.checkpoint_state()  # gathered from both ranks
        torch.save(results, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sharded_sampled_head_matches_the_sharded_head_and_the_naive_reference(tmp_path):
    mp.spawn(_sharded, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    for rank in ranks:  # rate 1: exactly the sharded head
        for key in ("value", "embeddings", "weight"):
            assert torch.equal(rank["rate1"][key], rank["unsampled"][key]), key

    reference, embeddings, labels = _inputs()
    sampled = torch.cat([rank["rate04"]["index"] for rank in ranks])
    assert [len(rank["rate04"]["index"]) for rank in ranks] == [int(0.4 * 11), int(0.4 * 12)]
    assert set(labels.tolist()) <= set(sampled.tolist())
    expected, x_grad, w_grad = _reference_gradients(embeddings, labels, reference.weight, sampled.tolist())
    for rank in ranks:
        torch.testing.assert_close(rank["rate04"]["value"].double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["rate04"]["embeddings"] for r in ranks]).double(), x_grad,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([r["rate04"]["weight"] for r in ranks]).double(), w_grad[sampled],
                               rtol=1e-4, atol=1e-5)
    for rank in ranks:
        assert torch.equal(rank["checkpoint"]["weight"], reference.weight.detach())
        assert int(rank["checkpoint"]["draws"]) == 1


# ----- through the trainer -----------------------------------------------------------------------------
TINY = ["device=cpu", "model.backbone=small_cnn", "model.embedding_dim=16", "model.input_size=32",
        "model.options={width: 8, norm: group}", "training.batch_size=16", "training.optimizer=sgd",
        "training.lr=0.05", "training.momentum=0.9", "training.weight_decay=0.01", "training.log_every_steps=1",
        "training.augmentation=none", "training.validate_every_epochs=null", "data.validation_fraction=0.25",
        "loss.name=arcface", "loss.params={s: 16.0, m: 0.2}"]


def _config(small_synthetic, run_dir, *overrides):
    return load_config(None, [f"data.root={small_synthetic / 'aligned'}", f"training.run_dir={run_dir}", *TINY,
                              *overrides])


def test_unsampled_rows_and_their_momentum_stay_unchanged_through_the_trainer(small_synthetic, tmp_path):
    trainer = Trainer(_config(small_synthetic, tmp_path / "run", "training.sample_rate=0.5"), progress=False)
    head, optimizer = trainer.loss, trainer.optimizer
    assert isinstance(head, SampledMarginHead) and head.num_classes == 9
    images, labels = torch.randn(16, 3, 32, 32), torch.tensor([0, 1] * 8)
    before, momentum, rows_seen = head.weight.clone(), torch.zeros_like(head.weight), set()
    for _ in range(3):
        trainer.schedule.apply(optimizer, 0)
        optimizer.zero_grad(set_to_none=True)
        trainer.model(images, labels).backward()
        active, index = head.active, head.index
        assert len(index) == 4 and {0, 1} <= set(index.tolist())
        grad = active.grad + 0.01 * active.detach()  # SGD: weight decay, then momentum, by hand
        momentum[index] = 0.9 * momentum[index] + grad
        expected = before.clone()
        expected[index] -= optimizer.param_groups[-1]["lr"] * momentum[index]
        optimizer.step()
        rows_seen |= set(index.tolist())
        torch.testing.assert_close(head.weight, expected, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(head.row_state["momentum_buffer"], momentum, rtol=1e-6, atol=1e-7)
        untouched = [c for c in range(9) if c not in index.tolist()]
        assert torch.equal(head.weight[untouched], before[untouched])  # neither decay nor momentum moved them
        assert head.index is None and head.active.numel() == 0  # all written back, the optimiser holds no rows
        assert len(optimizer.state) == len(list(trainer.backbone.parameters()))
        before = head.weight.clone()
    assert len(rows_seen) > 4  # negatives change from step to step


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resume_with_sampling_continues_exactly(small_synthetic, tmp_path, optimizer):
    common = ["training.epochs=3", "training.sample_rate=0.3", f"training.optimizer={optimizer}"]
    straight = assert_resume_is_exact(lambda run_dir: _config(small_synthetic, run_dir, *common), tmp_path)
    assert len({round(loss, 4) for _, loss in straight}) > 1


# ----- configuration ---------------------------------------------------------------------------------
def test_sample_rate_is_validated_and_needs_a_margin_head():
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(ConfigError, match="training.sample_rate"):
            load_config(None, [f"training.sample_rate={bad}"])
    training = load_config(None, ["training.sample_rate=0.3"]).training
    with pytest.raises(ValueError, match="sample_rate=0.3 needs a margin head .*'softmax'"):
        build_head(build_loss("softmax", DIM, CLASSES), "softmax", training, DistributedContext(), 0)
    with pytest.raises(ValueError, match="model_parallel_head: true"):
        build_head(build_loss("arcface", DIM, CLASSES), "arcface", training, DistributedContext(0, 2), 0)
    assert isinstance(build_head(build_loss("cosface", DIM, CLASSES), "cosface", training, DistributedContext(), 0),
                      SampledMarginHead)
    unsampled = build_loss("softmax", DIM, CLASSES)
    assert build_head(unsampled, "softmax", load_config(None).training, DistributedContext(), 0) is unsampled


def test_the_ms1m_preset_samples_a_fifth_of_the_sharded_head():
    config = load_config("configs/ms1m-iresnet100-arcface.yaml")
    assert config.training.sample_rate == 0.2 and config.training.model_parallel_head
    assert config.data.format == "recordio" and config.loss.name == "arcface"


def test_head_benchmark_rows_report_time_memory_and_ratios(capsys):
    rows = head_benchmark_rows(classes=(2000,), rates=(1.0, 0.1), batch=16, dim=32, steps=2)
    assert [(r["classes"], r["rate"]) for r in rows] == [(2000, 1.0), (2000, 0.1)]
    assert rows[0]["speedup"] == 1.0 and rows[1]["sampled"] == 200 and rows[1]["memory_ratio"] < 1
    assert all(r["ms_per_step"] > 0 and r["memory_bytes"] > 0 for r in rows)
    print_head_table(rows)
    assert "| 2,000 | 0.1 | 200 |" in capsys.readouterr().out


# ----- accuracy on the synthetic faces --------------------------------------------------------------------
@pytest.mark.slow
def test_rate_03_reaches_the_held_out_accuracy_of_rate_1(tmp_path):
    """The demo setup shrunk to run in seconds: 60 generated identities (45 train, 15 held out) x 8 images."""
    from faceid.data.synthetic import generate_dataset

    generate_dataset(tmp_path / "faces", identities=60, images_per_identity=8, seed=0, canvas_size=160,
                     aligned_size=64, progress=False)
    accuracy = {}
    for rate in (1.0, 0.3):
        config = load_config("configs/demo-synthetic.yaml", [
            f"data.root={tmp_path / 'faces' / 'aligned'}", f"training.run_dir={tmp_path / str(rate)}", "device=cpu",
            "model.input_size=32", "model.embedding_dim=32", "model.options={width: 8}", "training.batch_size=32",
            "training.lr=0.005", "training.epochs=10", "training.augmentation=none",
            "training.validate_every_epochs=null",
            "evaluation.pairs_per_fold=100", f"training.sample_rate={rate}"])
        summary = Trainer(config, progress=False).train()
        assert summary["identities"] == 45
        accuracy[rate] = summary["last_validation"]["accuracy_10fold_mean"]
    print(f"held-out verification accuracy: rate 1 {accuracy[1.0]:.4f}, rate 0.3 {accuracy[0.3]:.4f}")
    assert accuracy[1.0] > 0.75  # training worked, so the comparison means something
    assert accuracy[0.3] >= accuracy[1.0] - 0.01
