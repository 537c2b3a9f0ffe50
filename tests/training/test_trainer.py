"""The trainer end to end on tiny synthetic data: outputs, resume equality, early stopping,
corrupt images, and 2-process DDP (gloo) against a single process with the same global batch."""

import csv
import json
import os
import subprocess
import sys

import pytest

from faceid.config import load_config
from faceid.training.trainer import Trainer

TINY = ["device=cpu", "model.backbone=small_cnn", "model.embedding_dim=16", "model.input_size=32",
        "model.options={width: 8}", "training.batch_size=16", "training.optimizer=sgd", "training.lr=0.05",
        "training.log_every_steps=1", "training.augmentation=light", "evaluation.folds=2",
        "evaluation.pairs_per_fold=20", "data.validation_fraction=0.25", "loss.name=arcface",
        "loss.params={s: 16.0, m: 0.2}"]


def _config(small_synthetic, run_dir, *overrides):
    return load_config(None, [f"data.root={small_synthetic / 'aligned'}", f"training.run_dir={run_dir}", *TINY,
                              *overrides])


def _train_losses(run_dir):
    with open(run_dir / "metrics.csv") as handle:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(handle) if r["split"] == "train"]


def test_run_directory_holds_everything(small_synthetic, tmp_path):
    summary = Trainer(_config(small_synthetic, tmp_path / "run", "training.epochs=2"), progress=False).train()
    run = tmp_path / "run"
    for name in ("config.yaml", "train.log", "metrics.csv", "checkpoints/last.pt", "model.pt", "best.pt",
                 "summary.json"):
        assert (run / name).is_file(), name
    assert summary["identities"] == 9 and summary["validation_images"] == 12
    assert json.loads((run / "summary.json").read_text())["steps"] == summary["steps"] == 4
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert any(r["split"] == "validation" and r["accuracy"] for r in rows)


def assert_resume_is_exact(make_config, tmp_path) -> list[tuple[int, float]]:
    """Six steps straight, and three + `--resume` + three, from `make_config(run_dir)`: the losses must be
    equal to 1e-6; returns the straight run's (step, loss) rows."""
    Trainer(make_config(tmp_path / "straight"), progress=False).train()
    Trainer(make_config(tmp_path / "split"), progress=False).train(until_step=3)
    Trainer(make_config(tmp_path / "split"), resume="auto", progress=False).train()
    straight, split = _train_losses(tmp_path / "straight"), _train_losses(tmp_path / "split")
    assert [s for s, _ in straight] == [s for s, _ in split] == list(range(1, 7))
    for (_, a), (_, b) in zip(straight, split, strict=True):
        assert a == pytest.approx(b, abs=1e-6)
    return straight


def test_resume_continues_exactly(small_synthetic, tmp_path):
    common = ["training.validate_every_epochs=null", "training.epochs=3",
              "training.schedule={name: cosine, warmup_steps: 2}"]
    assert_resume_is_exact(lambda run_dir: _config(small_synthetic, run_dir, *common), tmp_path)


def test_early_stopping_when_validation_stops_improving(small_synthetic, tmp_path):
    config = _config(small_synthetic, tmp_path / "run", "training.epochs=20", "training.lr=1e-12",
                     "training.validate_every_steps=1", "training.early_stopping_patience=1",
                     "model.options={width: 8, norm: group}")
    summary = Trainer(config, progress=False).train()
    assert summary["stopped_early"] and summary["steps"] == 2


def test_pair_losses_get_pk_batches_and_compositions_train(small_synthetic, tmp_path):
    for loss in ("triplet", "arcface+center"):
        config = _config(small_synthetic, tmp_path / loss, f"loss.name={loss}", "loss.params={}", "training.epochs=1",
                         "training.images_per_identity=4")
        trainer = Trainer(config, progress=False)
        assert type(trainer.sampler).__name__ == ("PKBatchSampler" if loss == "triplet" else "RandomBatchSampler")
        assert trainer.train()["steps"] >= 1


def test_a_corrupt_training_image_is_skipped(small_synthetic, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(small_synthetic / "aligned", root)
    (root / "id_00003" / "001.png").write_bytes(b"corrupt")
    config = load_config(None, [f"data.root={root}", f"training.run_dir={tmp_path / 'run'}", *TINY, "training.epochs=1",
                                "data.validation_fraction=0.0", "training.validate_every_epochs=null"])
    assert Trainer(config, progress=False).train()["steps"] == 3
    assert "001.png" in (tmp_path / "run" / "train.log").read_text()


def test_bad_configurations_are_refused(small_synthetic, tmp_path):
    with pytest.raises(ValueError, match="data.root"):
        Trainer(load_config(None, ["device=cpu"]), progress=False)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume"):
        Trainer(_config(small_synthetic, tmp_path / "none"), resume="auto", progress=False)


def _torchrun(small_synthetic, run_dir, processes, *overrides, resume=None):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
               str(29400 + processes + len(overrides) + (resume is not None)), "-m", "faceid.cli", "train"]
    command += ["--resume", str(resume)] if resume else []
    for item in [f"data.root={small_synthetic / 'aligned'}", f"training.run_dir={run_dir}", *TINY, *overrides]:
        command += ["--set", item]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("head", ["replicated", "model_parallel"])
def test_two_process_ddp_matches_one_process(small_synthetic, tmp_path, head):
    overrides = ["training.max_steps=4", "training.epochs=2", "training.validate_every_epochs=null",
                 "model.options={width: 8, norm: group}", "training.augmentation=none",
                 f"training.model_parallel_head={'true' if head == 'model_parallel' else 'false'}"]
    _torchrun(small_synthetic, tmp_path / "ddp", 2, *overrides)
    Trainer(_config(small_synthetic, tmp_path / "single", *overrides), progress=False).train()
    ddp, single = _train_losses(tmp_path / "ddp"), _train_losses(tmp_path / "single")
    assert [s for s, _ in ddp] == [s for s, _ in single] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(ddp, single, strict=True):
        assert a == pytest.approx(b, rel=1e-4)
    assert abs(ddp[-1][1] - ddp[0][1]) > 1e-3  # training moved, so later steps test the updates too


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_sharded_head_resume_restores_every_ranks_optimiser_state(small_synthetic, tmp_path, optimizer):
    """The trainer's optimiser state dict is rank 0's; each rank's class rows carry their own momentum
    (Adam moments), so a resumed sharded run must continue exactly as the uninterrupted one."""
    overrides = ["training.max_steps=4", "training.epochs=2", "training.validate_every_epochs=null",
                 "model.options={width: 8, norm: group}", "training.augmentation=none",
                 "training.model_parallel_head=true", "training.checkpoint_every_steps=2",
                 f"training.optimizer={optimizer}"]
    _torchrun(small_synthetic, tmp_path / "straight", 2, *overrides)
    _torchrun(small_synthetic, tmp_path / "resumed", 2, *overrides,
              resume=tmp_path / "straight" / "checkpoints" / "step_00000002.pt")
    straight, resumed = dict(_train_losses(tmp_path / "straight")), dict(_train_losses(tmp_path / "resumed"))
    assert sorted(resumed) == [3, 4] and straight[4] != pytest.approx(straight[3], abs=1e-3)
    for step in (3, 4):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-6)


def test_validation_embeds_through_the_live_backbone_without_hashing_it(small_synthetic, tmp_path, monkeypatch):
    from faceid.torch_embedder import TorchEmbedder

    def no_fingerprint(self):
        raise AssertionError("validation must not fingerprint the live backbone")

    monkeypatch.setattr(TorchEmbedder, "fingerprint", property(no_fingerprint))
    trainer = Trainer(_config(small_synthetic, tmp_path / "run", "training.epochs=1"), progress=False)
    report = trainer.validate()
    assert 0 <= report["accuracy_10fold_mean"] <= 1 and trainer.backbone.training
