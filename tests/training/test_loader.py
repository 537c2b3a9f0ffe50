"""The training loader and step: albumentations run in worker processes with the same seeded result as
in the main process, batches are pinned only for CUDA, on a GPU the compiled bf16 channels-last step
runs from pinned batches, and a diverged loss stops training with a clear error."""

import pytest
import torch

from faceid.config import load_config
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.data.recordio import write_recordio
from faceid.training.loader import build_loader
from faceid.training.trainer import Trainer
from tests.training.test_trainer import TINY


def _trainer(small_synthetic, run_dir, *overrides):
    config = load_config(None, [f"data.root={small_synthetic / 'aligned'}", f"training.run_dir={run_dir}", *TINY,
                                "training.validate_every_epochs=null", *overrides])
    return Trainer(config, progress=False)


def test_worker_processes_augment_exactly_as_the_main_process(small_synthetic, tmp_path):
    in_process = next(iter(_trainer(small_synthetic, tmp_path / "a", "training.augmentation=strong")._loader()))
    in_workers = next(iter(_trainer(small_synthetic, tmp_path / "b", "training.augmentation=strong",
                                    "training.workers=2")._loader()))
    assert torch.equal(in_process[0], in_workers[0]) and torch.equal(in_process[1], in_workers[1])


@pytest.mark.parametrize(("device", "pinned"), [("cpu", False), ("cuda", True)])
def test_batches_are_pinned_only_for_cuda(device, pinned):
    samples = [(torch.zeros(3), 0)] * 4
    loader = build_loader(samples, [[0, 1], [2, 3]], workers=1, device=torch.device(device))
    assert loader.pin_memory is pinned and loader.num_workers == 1 and loader.worker_init_fn is not None
    assert build_loader(samples, [[0, 1]], workers=0, device=torch.device(device)).worker_init_fn is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_compiled_bf16_step_on_cuda_from_pinned_batches(small_synthetic, tmp_path):
    trainer = _trainer(small_synthetic, tmp_path / "gpu", "device=cuda", "training.amp=bf16",
                       "training.channels_last=true", "training.compile=true", "training.workers=2")
    images, labels = next(iter(trainer._loader()))
    assert images.is_pinned()
    losses = [trainer._step(images, labels)[0].item() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_a_non_finite_loss_stops_training_with_a_clear_error(small_synthetic, tmp_path):
    """Under torch.compile the loss skips its host-side input checks, so the logged loss is checked."""
    trainer = _trainer(small_synthetic, tmp_path / "nan")
    with pytest.raises(ValueError, match="training diverged: the loss is nan at step 1; lower training.lr"):
        trainer.step = 1
        trainer._after_step(torch.tensor(float("nan")), 0.1)


def test_recordio_batches_from_worker_processes_equal_the_main_process(small_synthetic, tmp_path):
    """Forked workers inherit the reader's open file: reads must not share its file offset."""
    images = list_identity_folder(small_synthetic / "aligned")
    identities = sorted({i.identity for i in images})
    write_recordio(tmp_path / "train.rec", [(read_rgb(i.path), identities.index(i.identity)) for i in images])
    pack = ["data.format=recordio", f"data.rec={tmp_path / 'train.rec'}", "training.augmentation=none"]
    batches = {}
    for workers in (0, 2):
        trainer = _trainer(small_synthetic, tmp_path / f"w{workers}", *pack, f"training.workers={workers}")
        batches[workers] = list(trainer._loader())
    assert len(batches[0]) == len(batches[2]) > 1
    for (a, x), (b, y) in zip(batches[0], batches[2], strict=True):
        assert torch.equal(a, b) and torch.equal(x, y)
