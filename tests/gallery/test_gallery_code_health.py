"""Re-embedding is all-or-nothing and holds the writer lock throughout; clear errors; SQL only in the store."""

import fcntl
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from faceid.data.folder import list_identity_folder
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.transfer import reembed_gallery
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.doubles import embeddings_gallery, stored
from tests.waiting import TIMEOUT, wait_for

DIM = 16
GALLERY_PACKAGE = Path(__file__).resolve().parents[2] / "gallery"


class _Embedder:
    """Wraps a real embedder; calls `on_embed(call number)` before each batch (it may raise)."""

    def __init__(self, inner, on_embed):
        self.inner, self.on_embed, self.calls = inner, on_embed, 0
        self.fingerprint, self.embedding_dim, self.model_input = (inner.fingerprint, inner.embedding_dim,
                                                                  inner.model_input)

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
    before = (gallery.setting("embedder"), stored(gallery, "all_templates"),
              gallery.identify(probe, k=2, closed_set=True),
              gallery.stats()["generation"], len(gallery.audit_log()))
    index_before = gallery.index

    def fail_on_second_batch(call):
        if call == 2:
            raise RuntimeError("CUDA error: device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        reembed_gallery(gallery, _Embedder(second, fail_on_second_batch))
    assert gallery.fingerprint == before[0] and gallery.setting("embedder") == before[0]
    assert gallery.index is index_before
    ids, owners, embeddings = stored(gallery, "all_templates")
    assert np.array_equal(ids, before[1][0]) and np.array_equal(owners, before[1][1])
    assert np.array_equal(embeddings, before[1][2])
    assert gallery.identify(probe, k=2, closed_set=True) == before[2]  # the probe still goes through the first embedder
    assert (gallery.stats()["generation"], len(gallery.audit_log())) == (before[3], before[4])
    reopened = Gallery(gallery.path, first)  # the first embedder still opens it
    assert reopened.identify(probe, k=2, closed_set=True) == before[2]
    reopened.close()


def test_reembed_holds_the_writer_lock_throughout_and_a_concurrent_enrolment_waits(enrolled, monkeypatch):
    gallery, _, second, _ = enrolled
    held, outcome = [], {}
    other = Gallery(gallery.path)  # another writer of the same gallery, embeddings only, opened before
    blocked, acquired = threading.Event(), threading.Event()  # the other writer's request for the lock
    flock = fcntl.flock

    def watched_flock(handle, operation):
        """The other writer's blocking request for the writer lock says whether the lock was taken when it came
        (`blocked`), then waits for it as before; `acquired` once it holds it."""
        if threading.current_thread() is writer and operation == fcntl.LOCK_EX:
            try:
                flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                blocked.set()
                flock(handle, fcntl.LOCK_EX)
            acquired.set()
            return None
        return flock(handle, operation)

    monkeypatch.setattr(fcntl, "flock", watched_flock)

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
        if call == 1:  # the other writer comes while the migration runs...
            writer.start()
            wait_for(lambda: acquired.is_set() or blocked.is_set() or not writer.is_alive(),
                     what="the other writer to ask for the writer lock")
            assert blocked.is_set(), f"the other writer did not find the writer lock taken: {outcome}"
        # ...and, at every batch of it, has neither the lock nor an answer
        assert not acquired.is_set() and not outcome, f"the other writer went on during the migration: {outcome}"

    migrated = reembed_gallery(gallery, _Embedder(second, probe_lock))
    writer.join(timeout=TIMEOUT)
    assert not writer.is_alive(), f"the other writer still waits {TIMEOUT:g} s after the migration released the lock"
    assert migrated["templates"] == 6 and held == [True] * 6 and acquired.is_set()
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
    store = GALLERY_PACKAGE / "store"
    offenders = [f"{path.relative_to(GALLERY_PACKAGE)}: {line.strip()}"
                 for path in sorted(GALLERY_PACKAGE.rglob("*.py")) if store not in path.parents
                 for line in path.read_text().splitlines() if re.search(r"\.execute(many|script)?\(", line)]
    assert not offenders, f"SQL outside gallery/store/: {offenders}"
    assert any(re.search(r"\.execute\(", path.read_text()) for path in store.glob("*.py"))  # the check can see SQL


def test_reembed_drops_the_real_tuning_probes_of_the_old_model(enrolled):
    gallery, _, second, _ = enrolled
    with gallery.writing() as write:
        write.set_tuning_probes(np.ones((3, DIM), np.float32))
    reembed_gallery(gallery, second)
    assert stored(gallery, "tuning_probes").shape == (0, 0)


def test_reembed_closes_the_index_it_replaces(enrolled, monkeypatch):
    gallery, _, second, probe = enrolled
    old, closed = gallery.index, []
    close = old.close
    monkeypatch.setattr(old, "close", lambda: closed.append(close()))
    reembed_gallery(gallery, second)
    assert closed == [None] and gallery.index is not old
    if gallery.backend["name"] == "milvus":
        from faceid.gallery.index.milvus_index import _lite_users

        assert _lite_users[gallery.backend["uri"]] == 1  # only the new index holds the Milvus Lite server
    assert gallery.identify(probe, k=2, closed_set=True).candidates and gallery.check()["consistent"]
