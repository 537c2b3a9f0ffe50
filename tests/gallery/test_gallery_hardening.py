"""Gallery hardening outside HTTP: names, thresholds and JSON in the CLI, unreadable files, reembed and kept images."""

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from faceid.checkpoint import save_backbone_checkpoint
from faceid.cli import main
from faceid.commands.output import print_json
from faceid.gallery.enrollment import enroll_folder
from faceid.gallery.gallery import Gallery
from faceid.gallery.records import GalleryError, NotEnrolled
from faceid.gallery.transfer import import_gallery
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.doubles import deny_reading, embeddings_gallery

DIM = 8
HOSTILE = ["   ", "\t", "a\x00b", "a\nb", "\u202eevil", "a\u200bb", "x" * 100_000, "UNKNOWN", " alice"]


def _gallery(path, backend):
    return embeddings_gallery(path, backend, DIM, fingerprint="test")


@pytest.mark.parametrize("name", HOSTILE)
def test_every_way_in_refuses_hostile_names(tmp_path, name, backend):
    gallery = _gallery(tmp_path / "g", backend)
    with pytest.raises(GalleryError, match="identity name"):
        gallery.enroll(name, [np.ones(DIM)])
    with pytest.raises(GalleryError, match="identity name"):
        gallery.enroll_many({name: [np.ones(DIM)]})
    gallery.enroll("bob", [np.ones(DIM)])
    with pytest.raises(GalleryError, match="identity name"):
        gallery.rename("bob", name)
    assert [i["identity"] for i in gallery.list()] == ["bob"]


def test_import_refuses_a_hostile_name(tmp_path, backend):
    source = tmp_path / "x.npz"
    np.savez(source, identities=np.array(["a\u202eb"]), metadata=np.array(["{}"]), sources=np.array([""]),
             hashes=np.array(["h"]), qualities=np.array([np.nan]), embeddings=np.ones((1, DIM)),
             settings=np.array(json.dumps({"embedder": {"fingerprint": "test", "embedding_dim": DIM}})))
    gallery = _gallery(tmp_path / "g", backend)
    with pytest.raises(GalleryError, match="bidi override"):
        import_gallery(gallery, source)


def test_names_equal_after_case_folding_are_one_person(tmp_path, backend):
    gallery = _gallery(tmp_path / "g", backend)
    gallery.enroll("Alice", [np.ones(DIM)])
    with pytest.raises(GalleryError, match="clashes with the enrolled 'Alice'"):
        gallery.enroll("ALICE", [np.full(DIM, 2.0)])
    gallery.enroll("bob", [np.eye(DIM)[0]])
    with pytest.raises(GalleryError, match="clashes"):
        gallery.rename("bob", "alice")
    gallery.rename("Alice", "alice")  # a change of case of the same identity is a rename
    assert [i["identity"] for i in gallery.list()] == ["alice", "bob"]


def test_an_old_gallery_gets_name_keys_and_keeps_working(tmp_path, backend):
    _gallery(tmp_path / "g", backend).close()
    with sqlite3.connect(tmp_path / "g" / "gallery.db") as connection:  # as galleries were before name keys
        connection.execute("DROP INDEX identities_name_key")
        connection.execute("ALTER TABLE identities DROP COLUMN name_key")
        for name in ("Carol", "carol"):
            connection.execute("INSERT INTO identities(name, created) VALUES(?, 0)", (name,))
    gallery = Gallery(tmp_path / "g")
    with pytest.raises(GalleryError, match="clashes"):
        gallery.enroll("CAROL", [np.ones(DIM)])
    gallery.enroll("Carol", [np.ones(DIM)])
    assert {i["identity"] for i in gallery.list()} == {"Carol", "carol"}


def test_a_missing_identity_is_not_enrolled_by_type(tmp_path, backend):
    gallery = _gallery(tmp_path / "g", backend)
    for call in (lambda: gallery.verify(np.ones(DIM), "x is not enrolled"), lambda: gallery.remove("nobody"),
                 lambda: gallery.rename("nobody", "somebody")):
        with pytest.raises(NotEnrolled):
            call()


def test_an_unreadable_file_is_one_failure_not_the_end_of_the_enrolment(tmp_path, small_synthetic, monkeypatch,
                                                                         backend):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    gallery = Gallery.create(tmp_path / "g", embedder, backend=backend)
    locked = small_synthetic / "aligned" / "id_00003" / "001.png"
    deny_reading(monkeypatch, locked)
    summary = enroll_folder(gallery, small_synthetic / "aligned")
    assert summary["enrolled_samples"] == 47 and summary["failed"] == 1
    assert "permission denied" in summary["failures"][str(locked)]


def test_print_json_never_writes_nan(capsys):
    print_json({"threshold": float("nan"), "scores": [1.0, float("-inf")], "far": float("inf")})
    printed = json.loads(capsys.readouterr().out)
    assert printed["threshold"] is None and "nan" in printed["threshold_reason"]
    assert printed["scores"] == [1.0, None] and printed["far"] is None


@pytest.fixture
def cli_gallery(tmp_path, small_synthetic, backend):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    gallery, aligned = str(tmp_path / "g"), small_synthetic / "aligned"
    assert main(["enroll", "--json", gallery, "--model", str(tmp_path / "model.pt"), "--aligned", "--backend", backend,
                 "--identity", "alice", str(aligned / "id_00001" / "000.png")]) == 0
    return gallery, aligned / "id_00001" / "001.png"


@pytest.mark.parametrize("threshold", ["nan", "inf", "-inf", "-5", "2"])
def test_the_cli_refuses_a_threshold_that_is_not_a_cosine(cli_gallery, capsys, threshold):
    gallery, probe = cli_gallery
    with pytest.raises(SystemExit):
        main(["identify", "--json", gallery, str(probe), "--json", f"--threshold={threshold}"])
    assert "threshold must be a finite number in [-1, 1]" in capsys.readouterr().err


def test_the_cli_may_not_lower_a_calibrated_threshold_by_default(cli_gallery, capsys):
    gallery, probe = cli_gallery
    Gallery(Path(gallery)).set_threshold(0.5, {"source": "test"})
    capsys.readouterr()
    assert main(["verify", "--json", gallery, str(probe), "--identity", "alice", "--threshold", "-0.9"]) == 2
    assert "below the gallery's" in capsys.readouterr().err
    assert main(["verify", "--json", gallery, str(probe), "--identity", "alice", "--threshold", "-0.9",
                 "--threshold-override", "any"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] is True


def test_reembed_command_and_kept_images(tmp_path, small_synthetic, capsys, backend):
    first = TorchEmbedder.untrained("small_cnn", 16, 64, seed=0, device="cpu")
    second = TorchEmbedder.untrained("small_cnn", 16, 64, seed=1, device="cpu")
    save_backbone_checkpoint(tmp_path / "one.pt", first.model, "small_cnn", 16, 64)
    save_backbone_checkpoint(tmp_path / "two.pt", second.model, "small_cnn", 16, 64)
    original = tmp_path / "face.png"
    original.write_bytes((small_synthetic / "aligned" / "id_00002" / "000.png").read_bytes())
    gallery = str(tmp_path / "g")
    assert main(["enroll", "--json", gallery, "--model", str(tmp_path / "one.pt"), "--aligned", "--keep-images",
                 "--backend", backend, "--identity", "dora", str(original)]) == 0
    Gallery(Path(gallery)).enroll("eve", [np.ones(16)])  # an embedding: no image to keep
    original.unlink()  # the kept copy is what reembed reads
    capsys.readouterr()
    assert main(["gallery", "reembed", "--json", gallery, "--model", str(tmp_path / "two.pt")]) == 2
    assert "1 template(s) cannot be migrated" in capsys.readouterr().err
    assert main(["gallery", "remove", "--json", gallery, "eve"]) == 0
    assert main(["gallery", "reembed", "--json", gallery, "--model", str(tmp_path / "two.pt")]) == 0
    capsys.readouterr()
    kept = list((tmp_path / "g" / "images").rglob("*.png"))
    assert len(kept) == 1 and kept[0].parent.name == kept[0].name[:2]
    assert main(["gallery", "keep-images", "--json", gallery, "off"]) == 0
    assert json.loads(capsys.readouterr().out) == {"keep_images": False}
