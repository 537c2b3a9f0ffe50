import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid.data.dataset import FolderDataset, RecordIODataset, split_identities
from faceid.data.folder import list_identity_folder
from faceid.data.recordio import write_recordio
from faceid.training.augmentation import Augmentation
from faceid.training.samplers import build_sampler


def test_identity_disjoint_split(small_synthetic):
    images = list_identity_folder(small_synthetic / "aligned")
    train, validation = split_identities(images, 0.25, seed=1)
    assert {i.identity for i in train}.isdisjoint({i.identity for i in validation})
    assert len({i.identity for i in validation}) == 3 and len(train) + len(validation) == len(images)
    assert split_identities(images, 0.25, seed=1) == (train, validation)


def test_recordio_round_trip(tmp_path):
    samples = [(np.full((16, 16, 3), (40 * k, 200 - 30 * k, 90), np.uint8), label)
               for k, label in enumerate((0, 0, 1, 2, 2))]
    write_recordio(tmp_path / "train.rec", samples)
    dataset = RecordIODataset(tmp_path / "train.rec")
    assert len(dataset) == 5 and dataset.labels.tolist() == [0, 0, 1, 2, 2] and dataset.num_classes == 3
    crop, label = dataset.load(3)
    assert label == 2 and crop.shape == (16, 16, 3)
    assert np.abs(crop.astype(int) - samples[3][0].astype(int)).mean() < 3  # JPEG, lossy


def test_recordio_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.rec"):
        RecordIODataset(tmp_path / "train.rec")
    write_recordio(tmp_path / "train.rec", [(np.zeros((8, 8, 3), np.uint8), 0)])
    (tmp_path / "train.idx").write_text("0\t0\nbroken line here\n")
    with pytest.raises(ValueError, match=r"train.idx:2"):
        RecordIODataset(tmp_path / "train.rec")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to list open descriptors")
def test_recordio_reads_leave_the_shared_file_offset_alone(tmp_path):
    """DataLoader workers forked after the labels were read share the reader's descriptor, and with it
    one file offset: a seek + read in one worker would move it under another worker's read."""
    write_recordio(tmp_path / "train.rec", [(np.full((16, 16, 3), k * 50, np.uint8), k) for k in range(3)])
    dataset = RecordIODataset(tmp_path / "train.rec")
    dataset.load(2)
    pack = str((tmp_path / "train.rec").resolve())
    descriptors = [int(fd.name) for fd in Path("/proc/self/fd").iterdir() if os.path.realpath(fd) == pack]
    assert descriptors and all(os.lseek(fd, 0, os.SEEK_CUR) == 0 for fd in descriptors)


def test_a_truncated_recordio_pack_names_the_file(tmp_path):
    write_recordio(tmp_path / "train.rec", [(np.full((16, 16, 3), k * 50, np.uint8), k) for k in range(3)])
    dataset = RecordIODataset(tmp_path / "train.rec")
    last = max(dataset.reader.offsets.values())
    with open(tmp_path / "train.rec", "r+b") as handle:
        handle.truncate(last + 20)
    with pytest.raises(ValueError, match=r"train.rec: truncated record"):
        dataset.read(len(dataset) - 1)


def test_corrupt_sample_is_logged_and_replaced_by_its_identity(small_synthetic, tmp_path, caplog):
    images = list_identity_folder(small_synthetic / "aligned")[:8]
    broken = tmp_path / images[1].identity / "broken.png"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"garbage")
    from faceid.data.folder import LabelledImage

    dataset = FolderDataset(images[:1] + [LabelledImage(broken, images[1].identity)] + images[1:])
    with caplog.at_level(logging.WARNING):
        crop, label = dataset.load(1)
    assert label == dataset.labels[1] and crop.shape == (112, 112, 3)
    assert "broken.png" in caplog.text


class _CountingLabels(np.ndarray):
    comparisons = 0

    def __eq__(self, other):
        _CountingLabels.comparisons += 1
        return np.asarray(self) == other


def test_a_good_read_does_not_scan_the_labels(small_synthetic):
    """The replacement candidates are looked up only after a failure: at 5.8M samples a scan of the
    labels per read (5 ms) would cost more than decoding the crop."""
    dataset = FolderDataset(list_identity_folder(small_synthetic / "aligned")[:8])
    dataset.labels = dataset.labels.view(_CountingLabels)
    for index in range(len(dataset)):
        dataset.load(index)
    assert _CountingLabels.comparisons == 0


def test_pk_sampler_batches():
    labels = np.repeat(np.arange(10), 5)
    sampler = build_sampler("pk", labels, 12, seed=0, images_per_identity=3)
    for batch in sampler.batches(0):
        identities, counts = np.unique(labels[batch], return_counts=True)
        assert len(identities) == 4 and (counts == 3).all()
    assert all(np.array_equal(a, b) for a, b in zip(sampler.batches(2), sampler.batches(2), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(sampler.batches(1), sampler.batches(2), strict=True))
    with pytest.raises(ValueError, match="K >= 2 dividing"):
        build_sampler("pk", labels, 10, images_per_identity=3)


def test_balanced_sampler_evens_out_classes():
    labels = np.array([0] * 90 + [1] * 10)
    sampler = build_sampler("balanced", labels, 10, seed=0)
    drawn = np.concatenate([np.concatenate(sampler.batches(e)) for e in range(20)])
    assert 0.4 < (labels[drawn] == 1).mean() < 0.6


def test_random_sampler_is_a_permutation():
    sampler = build_sampler("random", np.arange(50), 10, seed=3)
    assert sorted(np.concatenate(sampler.batches(0)).tolist()) == list(range(50))
    with pytest.raises(ValueError, match="unknown sampler"):
        build_sampler("weighted", np.arange(5), 2)


def test_augmentation_presets_lists_and_errors():
    image = np.asarray(Image.new("RGB", (112, 112), (120, 80, 40)))
    for preset in ("none", "light", "strong"):
        out = Augmentation(preset)(image, seed=1)
        assert out.shape == image.shape
        assert np.array_equal(out, Augmentation(preset)(image, seed=1))
    flip = Augmentation([{"name": "HorizontalFlip", "p": 1.0}])
    gradient = np.tile(np.arange(112, dtype=np.uint8)[None, :, None], (112, 1, 3))
    assert np.array_equal(flip(gradient, 0), gradient[:, ::-1])
    with pytest.raises(ValueError, match="no transform 'Flipp'"):
        Augmentation([{"name": "Flipp"}])
    with pytest.raises(ValueError, match=r"augmentation\[0\] must be a mapping"):
        Augmentation(["HorizontalFlip"])
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        Augmentation("heavy")


def test_unknown_sampler_options_name_the_key_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['images_per_identity'\].*valid: none"):
        build_sampler("random", np.arange(20), 4, images_per_identity=2)
    with pytest.raises(ValueError, match=r"\['k'\].*images_per_identity"):
        build_sampler("pk", np.repeat(np.arange(5), 4), 4, k=2)


def test_auto_sampler_follows_the_loss_type():
    from faceid.losses import build_loss
    from faceid.training.samplers import auto_sampler

    for name, expected in [("triplet", "pk"), ("contrastive", "pk"), ("arcface", "random"), ("softmax", "random"),
                           ("arcface+center", "random"), ("center", "random")]:
        assert auto_sampler(build_loss(name, 8, 5)) == expected, name


def test_augmentation_presets_are_built_through_the_registry():
    from faceid.training.augmentation import Augmentation

    image = np.zeros((8, 8, 3), np.uint8)
    assert Augmentation("none")(image, 0) is image
    assert Augmentation("strong")(image, 0).shape == image.shape
    with pytest.raises(ValueError, match="unknown augmentation preset 'heavy'"):
        Augmentation("heavy")
