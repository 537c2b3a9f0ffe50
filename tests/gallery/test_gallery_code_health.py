"""Issue 14: re-embedding is all-or-nothing and holds the writer lock; clear errors; SQL only in the store."""

import fcntl
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from faceid.gallery.gallery import Gallery, GalleryError

from faceid.data.folder import list_identity_folder
from faceid.embedding import TorchEmbedder
from tests.gallery.doubles import embeddings_gallery

DIM = 16
GALLERY_PACKAGE = Path(__file__).resolve().parents[2] / "gallery"


class _Embedder:
    """Wraps a real embedder; calls `on_embed(call number)` before each batch (it may raise)."""

    def __init__(self, inner, on_embed):
        self.inner, self.on_embed, self.calls = inner, on_embed, 0
        self.fingerprint, self.embedding_dim, self.preprocessing = (inner.fingerprint, inner.embedding_dim,
                                                                    inner.preprocessing)

    def embed(self, crops):
        self.calls += 1
        self.on_embed(self.calls)
        return self.inner.embed(crops)


@pytest.fixture
def enrolled(tmp_path, small_synthetic, backend):
    """A gallery of two identities enrolled from images with one embedder, on each backend; a second embedder
    to migrate to."""
    first = TorchEmbedder.untrained("small_cnn", DIM, 64, seed=0, device="cpu")
    second = TorchEmbedder.untrained("small_cnn", DIM, 64, seed=1, device="cpu")
    images = [i.path for i in list_identity_folder(small_synthetic / "aligned")[:7]]
    gallery = Gallery.create(tmp_path / "g", first, backend=backend)
    gallery.enroll("a", images[:3])
    gallery.enroll("b", images[3:6])
    yield gallery, first, second, images[6]
    gallery.close()


def test_reembed_failing_mid_way_leaves_the_gallery_exactly_as_it_was(enrolled):
    gallery, first, second, probe = enrolled
    before = (gallery.store.get("embedder"), gallery.store.all_templates(), gallery.identify(probe, k=2),
              gallery.stats()["generation"], len(gallery.audit_log()))
    index_before = gallery.index

    def fail_on_second_batch(call):
        if call == 2:
            raise RuntimeError("CUDA error: device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        gallery.reembed(_Embedder(second, fail_on_second_batch))
    assert gallery.fingerprint == before[0] and gallery.store.get("embedder") == before[0]
    assert gallery.index is index_before
    ids, owners, embeddings = gallery.store.all_templates()
    assert np.array_equal(ids, before[1][0]) and np.array_equal(owners, before[1][1])
    assert np.array_equal(embeddings, before[1][2])
    assert gallery.identify(probe, k=2) == before[2]  # the probe still goes through the first embedder
    assert (gallery.stats()["generation"], len(gallery.audit_log())) == (before[3], before[4])
    reopened = Gallery(gallery.path, first)  # the first embedder still opens it
    assert reopened.identify(probe, k=2) == before[2]
    reopened.close()


def test_reembed_holds_the_writer_lock_throughout_and_a_concurrent_enrolment_waits(enrolled):
    gallery, _, second, _ = enrolled
    held, outcome = [], {}
    other = Gallery(gallery.path)  # another writer of the same gallery, embeddings only, opened before

    def late_enrolment():
        try:
            outcome["result"] = other.enroll("late", [np.ones(DIM)])
        except GalleryError as error:
            outcome["error"] = str(error)

    writer = threading.Thread(target=late_enrolment)

    def probe_lock(call):
        with open(gallery.path / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                fcntl.flock(handle, fcntl.LOCK_UN)
                held.append(False)
        if call == 1:
            writer.start()
            time.sleep(0.5)  # time for the other writer to commit, were the lock free

    migrated = gallery.reembed(_Embedder(second, probe_lock))
    writer.join(timeout=30)
    assert migrated["templates"] == 6 and held == [True] * 6
    # the waiting writer was opened before the migration: it is refused instead of adding a vector
    # from the old embedding space under the new fingerprint
    assert "re-embedded" in outcome.get("error", "") and "result" not in outcome
    assert [i["identity"] for i in gallery.list()] == ["a", "b"]
    other.close()


@pytest.mark.parametrize("policy", ["all", "mean"])
def test_verify_against_an_identity_without_templates_names_it(tmp_path, policy, backend):
    gallery = embeddings_gallery(tmp_path / "g", backend, template_policy=policy)
    gallery.enroll("empty", [])
    gallery.enroll("full", [np.ones(DIM)])
    with pytest.raises(GalleryError, match="identity 'empty' has no templates to verify against"):
        gallery.verify(np.ones(DIM), "empty", threshold=0.5)
    assert gallery.verify(np.ones(DIM), "full", threshold=0.5).accepted


def test_only_the_store_runs_sql():
    offenders = [f"{path.name}: {line.strip()}" for path in sorted(GALLERY_PACKAGE.glob("*.py"))
                 if path.name != "store.py"
                 for line in path.read_text().splitlines() if re.search(r"\.execute(many|script)?\(", line)]
    assert not offenders, f"SQL outside gallery/store.py: {offenders}"


def test_reembed_drops_the_real_tuning_probes_of_the_old_model(enrolled):
    gallery, _, second, _ = enrolled
    with gallery.store.transaction() as connection:
        gallery.store.set_tuning_probes(connection, np.ones((3, DIM), np.float32))
    gallery.reembed(second)
    assert gallery.store.tuning_probes().shape == (0, 0)


def test_reembed_closes_the_index_it_replaces(enrolled, monkeypatch):
    gallery, _, second, probe = enrolled
    old, closed = gallery.index, []
    close = old.close
    monkeypatch.setattr(old, "close", lambda: closed.append(close()))
    gallery.reembed(second)
    assert closed == [None] and gallery.index is not old
    if gallery.backend["name"] == "milvus":
        from faceid.gallery.index.milvus_index import _lite_users

        assert _lite_users[gallery.backend["uri"]] == 1  # only the new index holds the Milvus Lite server
    assert gallery.identify(probe, k=2).candidates and gallery.check()["consistent"]
