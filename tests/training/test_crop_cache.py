"""The memory-mapped crop cache: `faceid prepare` round trip, corrupt files reported, training from it,
and `training.compile`."""

import functools
import shutil

import numpy as np
import pytest
import torch

from faceid.cli import main
from faceid.config import ConfigError, load_config
from faceid.data.crop_cache import CropCache, prepare_cache
from faceid.data.dataset import FolderDataset, identity_images
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.training.trainer import Trainer
from tests.training.test_trainer import TINY


@pytest.fixture()
def tree_with_corrupt_file(small_synthetic, tmp_path):
    root = tmp_path / "aligned"
    shutil.copytree(small_synthetic / "aligned", root)
    (root / "id_00002" / "001.png").write_bytes(b"not a png")
    return root


def test_prepare_round_trip_reads_the_same_pixels_and_reports_the_corrupt_file(tree_with_corrupt_file, tmp_path,
                                                                                capsys):
    assert main(["prepare", str(tree_with_corrupt_file), str(tmp_path / "cache")]) == 0
    assert "id_00002/001.png" in capsys.readouterr().out
    cache = CropCache(tmp_path / "cache")
    assert [s["path"] for s in cache.skipped] == [str(tree_with_corrupt_file / "id_00002" / "001.png")]
    readable = [i for i in list_identity_folder(tree_with_corrupt_file) if i.path.name != "001.png"
                or i.identity != "id_00002"]
    images, opened = identity_images(tmp_path / "cache")
    assert [(i.path, i.identity) for i in images] == [(i.path.resolve(), i.identity) for i in readable]
    from_files, from_cache = FolderDataset(readable), FolderDataset(images, cache=opened)
    assert from_cache.class_names == from_files.class_names and list(from_cache.labels) == list(from_files.labels)
    for index in range(len(readable)):
        crop, label = from_cache.load(index)
        assert label == from_files.labels[index] and np.array_equal(crop, read_rgb(readable[index].path))
        assert crop.flags.writeable


def test_prepare_again_replaces_the_cache_atomically(tree_with_corrupt_file, tmp_path):
    prepare_cache(tree_with_corrupt_file, tmp_path / "cache", progress=False)
    shutil.rmtree(tree_with_corrupt_file / "id_00011")
    summary = prepare_cache(tree_with_corrupt_file, tmp_path / "cache", progress=False)
    assert len(CropCache(tmp_path / "cache")) == summary["images"] == 11 * 4 - 1
    assert len(list((tmp_path / "cache").glob("crops-*.u8"))) == 1  # the old crops file is gone
    assert not list((tmp_path / "cache").glob(".*tmp*"))


def test_clear_errors_name_the_input(tmp_path):
    with pytest.raises(ValueError, match="not a crop cache"):
        CropCache(tmp_path)
    (tmp_path / "empty" / "someone").mkdir(parents=True)
    (tmp_path / "empty" / "someone" / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="no readable image"):
        prepare_cache(tmp_path / "empty", tmp_path / "cache", progress=False)
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="cache directory .*a-file is an existing file"):
        prepare_cache(tmp_path / "empty", tmp_path / "a-file", progress=False)


def _config(root_key, root, run_dir, *overrides):
    return load_config(None, [f"{root_key}={root}", f"training.run_dir={run_dir}", *TINY, "training.epochs=1",
                              "training.validate_every_epochs=null", *overrides])


@pytest.mark.parametrize("root_key", ["data.root", "data.cache"])
def test_training_from_the_cache_matches_training_from_the_files(small_synthetic, tmp_path, root_key):
    prepare_cache(small_synthetic / "aligned", tmp_path / "cache", progress=False)
    from_files = Trainer(_config("data.root", small_synthetic / "aligned", tmp_path / "files"), progress=False)
    from_cache = Trainer(_config(root_key, tmp_path / "cache", tmp_path / "cached", "training.workers=1"),
                         progress=False)
    assert from_cache.train_set.cache is not None and from_files.train_set.cache is None
    first = next(iter(from_files._loader()))
    cached = next(iter(from_cache._loader()))
    assert torch.equal(first[0], cached[0]) and torch.equal(first[1], cached[1])
    assert from_cache.train()["steps"] == from_files.train()["steps"] == 2  # 9 training identities x 4 / 16


def test_compile_is_a_validated_boolean():
    assert load_config(None, ["training.compile=true"]).training.compile is True
    with pytest.raises(ConfigError, match="training.compile"):
        load_config(None, ["training.compile=fast"])


def test_a_compiled_step_equals_the_eager_step(small_synthetic, tmp_path, monkeypatch):
    """Inductor compiles small_cnn in minutes on a loaded 2-core CPU, so the compiled path is checked
    with dynamo + AOT autograd (`aot_eager`): the same graph capture, without code generation."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    overrides = ["training.augmentation=none", "model.options={width: 8, norm: group}"]
    eager = Trainer(_config("data.root", small_synthetic / "aligned", tmp_path / "e", *overrides), progress=False)
    compiled = Trainer(_config("data.root", small_synthetic / "aligned", tmp_path / "c", "training.compile=true",
                               *overrides), progress=False)
    assert compiled.model is not compiled.backbone and type(compiled.model).__name__ == "OptimizedModule"
    images, labels = next(iter(eager._loader()))
    for _ in range(2):
        (a, _), (b, _) = eager._step(images, labels), compiled._step(images, labels)
        assert a.item() == pytest.approx(b.item(), rel=1e-4, abs=1e-5)
    for p, q in zip(eager.backbone.parameters(), compiled.backbone.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)
