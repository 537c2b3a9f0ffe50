"""The Milvus backend's own guarantees, where the FAISS ones rest on snapshot files: the collection is brought
back to SQLite on open (missing, behind a dead writer), galleries sharing a server or a Milvus
Lite directory do not disturb each other, and the `index` option maps to a Milvus index or is refused."""

import subprocess
import sys

import numpy as np
import pytest

from faceid.gallery.gallery import Gallery
from faceid.gallery.index.milvus_index import MilvusIndex
from tests.gallery.conftest import MILVUS_MISSING
from tests.gallery.doubles import embeddings_gallery, stored, synthetic_people, unit32
from tests.waiting import TIMEOUT

pytestmark = pytest.mark.skipif(MILVUS_MISSING, reason="milvus-lite is not installed (pip install -e '.[milvus]')")
DIM = 16





def _brute_force_top(people, probes):
    names = [name for name, vectors in people.items() for _ in vectors]
    return [names[i] for i in np.argmax(np.concatenate(list(people.values())) @ np.asarray(probes).T, axis=0)]


def test_closing_one_gallery_leaves_the_others_on_the_same_milvus_lite_directory_working(tmp_path):
    people, centres = synthetic_people(3)
    writer = embeddings_gallery(tmp_path / "g", "milvus")
    writer.enroll_many(people)
    Gallery(tmp_path / "g").close()  # e.g. one reader thread of the service finishing
    assert writer.identify(centres[1], k=1, closed_set=True).identity == "p001"
    writer.enroll("late", [centres[0]])
    writer.close()


def test_galleries_sharing_a_milvus_server_keep_their_own_templates(tmp_path, milvus_server):
    first, _ = synthetic_people(5, seed=1)
    second, _ = synthetic_people(5, seed=2)
    one = embeddings_gallery(tmp_path / "one", "milvus", backend_options={"uri": milvus_server})
    other = embeddings_gallery(tmp_path / "other", "milvus", backend_options={"uri": milvus_server})
    one.enroll_many(first)
    other.enroll_many({f"other-{name}": vectors for name, vectors in second.items()})
    assert one.backend["collection"] != other.backend["collection"]
    assert one.index.client.describe_collection(one.backend["collection"])["consistency_level_name"] == "Strong"
    assert len(one.index) == len(other.index) == 10
    found = one.identify(second["p000"][0], k=5, closed_set=True).candidates
    assert all(not name.startswith("other-") for name, _ in found)
    one.close()
    reopened = Gallery(tmp_path / "one")
    assert reopened.stats()["index"]["rebuilt_reason"] is None and reopened.check()["consistent"]
    reopened.close()
    other.close()


@pytest.mark.parametrize("option, index_type, parameters, recall", [
    ("Flat", "FLAT", {}, 1.0), ("auto", "AUTOINDEX", {}, 0.95), ("HNSW", "HNSW", {"ef": 64}, 0.95),
    ("ivf_flat", "IVF_FLAT", {"nprobe": 32}, 0.95)])
def test_the_index_option_maps_to_a_milvus_index_that_answers_like_brute_force(tmp_path, option, index_type,
                                                                               parameters, recall):
    people, centres = synthetic_people(150)
    gallery = embeddings_gallery(tmp_path / "g", "milvus", index_factory=option, search_parameters=parameters)
    gallery.enroll_many(people)
    gallery.close()
    reopened = Gallery(tmp_path / "g")  # a gallery whose index Milvus cannot build fails here
    assert reopened.backend["index_type"] == index_type
    assert reopened.index.client.describe_index(reopened.backend["collection"], "vector")["index_type"] == index_type
    probes = list(unit32(centres + 0.2 * np.random.default_rng(3).normal(size=centres.shape)))
    found = [r.candidates[0][0] for r in reopened.identify_many(probes, k=1, closed_set=True)]
    assert np.mean([a == b for a, b in zip(found, _brute_force_top(people, probes), strict=True)]) >= recall
    reopened.close()


@pytest.mark.parametrize("option", ["HNSW32,Flat", "IVF16,Flat", "NotAnIndex"])
def test_an_index_milvus_does_not_have_is_refused_naming_the_option(tmp_path, option):
    with pytest.raises(ValueError, match=f"index '{option}' is not available with the milvus backend"):
        embeddings_gallery(tmp_path / "g", "milvus", index_factory=option)
    assert not (tmp_path / "g").exists()
    with pytest.raises(ValueError, match="FAISS cannot build index"):
        embeddings_gallery(tmp_path / "f", "faiss", index_factory="IVF_FLAT")


def test_a_missing_collection_is_rebuilt_on_open(tmp_path):
    people, centres = synthetic_people(4)
    with embeddings_gallery(tmp_path / "g", "milvus") as gallery:
        gallery.enroll_many(people)
        gallery.index.client.drop_collection(gallery.backend["collection"])
    reopened = Gallery(tmp_path / "g")
    assert "does not hold the store's templates" in reopened.stats()["index"]["rebuilt_reason"]
    assert len(reopened.index) == 8 and reopened.identify(centres[2], k=1, closed_set=True).identity == "p002"
    reopened.close()


def _fail_collection_writes(monkeypatch):
    for method in ("add", "remove"):
        monkeypatch.setattr(MilvusIndex, method, lambda *a, **k: (_ for _ in ()).throw(OSError("connection lost")))


def test_readers_stay_right_while_the_collection_is_behind_a_failed_write(tmp_path, monkeypatch):
    people, centres = synthetic_people(6)
    writer = embeddings_gallery(tmp_path / "g", "milvus")
    writer.enroll_many(people)
    reader = Gallery(tmp_path / "g")
    with monkeypatch.context() as patch:
        _fail_collection_writes(patch)
        with pytest.raises(OSError):
            writer.remove("p002")  # committed to SQLite; the collection still holds p002's templates
    assert "p002" not in [name for name, _ in reader.identify(centres[2], k=3, closed_set=True).candidates]
    writer.enroll("late", [centres[0]])  # the next write first brings the collection up to date
    assert reader.identify(centres[2], k=1, closed_set=True).identity != "p002" and len(reader.index) == 11
    assert reader.check()["consistent"]
    reader.close()
    writer.close()


DYING_WRITER = """
import os, sys, numpy as np
from faceid.gallery.index.live_index import LiveIndex
from faceid.gallery.gallery import Gallery
gallery = Gallery(sys.argv[1])
LiveIndex.refresh = lambda self, own_write=False: own_write and os._exit(9)  # killed after the commit
gallery.enroll("p001", [np.array({vector})])
"""


@pytest.mark.parametrize("policy", ["all", "mean"])
def test_a_writer_dying_after_its_commit_leaves_a_collection_that_is_repaired_on_open(tmp_path, policy):
    """The analogue of the FAISS 'after-commit' kill: a new sample of an enrolled identity keeps the
    identity's id (and, for the mean policy, changes its vector), so comparing ids alone is not enough."""
    people, centres = synthetic_people(5)
    with embeddings_gallery(tmp_path / "g", "milvus", template_policy=policy) as gallery:
        gallery.enroll_many(people)
    new_sample = unit32(centres[3] + centres[1])
    process = subprocess.run([sys.executable, "-c", DYING_WRITER.format(vector=new_sample.tolist()),
                              str(tmp_path / "g")])
    assert process.returncode == 9
    reopened = Gallery(tmp_path / "g")
    expected = np.concatenate([people["p001"], [new_sample]])
    score = float(unit32(expected.mean(0)) @ new_sample) if policy == "mean" else 1.0
    assert reopened.identify(new_sample, k=1, closed_set=True).candidates[0] == ("p001", pytest.approx(score, abs=1e-5))
    assert reopened.check()["consistent"]
    reopened.close()


def test_serving_a_milvus_lite_gallery_from_several_processes_is_refused_clearly(tmp_path):
    from faceid.gallery.records import GalleryError
    from faceid.gallery.service.app import serve

    gallery = embeddings_gallery(tmp_path / "g", "milvus")
    with pytest.raises(GalleryError, match="cannot be served by several processes: a Milvus Lite directory admits "
                                          r"one process at a time \(re-create the gallery on a Milvus server for "
                                          r"several\); serve it with --workers 1"):
        serve(gallery, workers=2)
    gallery.close()


def test_the_change_history_stays_bounded_and_a_dead_writer_is_still_repaired_by_replay(tmp_path, monkeypatch):
    """Milvus writes no snapshot files: the marked collection is recorded like one, which trims `changes`."""
    from faceid.gallery.index import live_index

    monkeypatch.setattr(live_index, "SNAPSHOT_CHANGES", 12)
    people, centres = synthetic_people(3)
    writer = embeddings_gallery(tmp_path / "g", "milvus")
    writer.enroll_many(people)
    reader = Gallery(tmp_path / "g")  # falls behind the trimmed history: reloads its maps
    sizes = []
    for cycle in range(30):  # 6 changes a cycle
        writer.enroll(f"passing{cycle}", list(synthetic_people(1, seed=cycle)[0].values())[0])
        writer.remove(f"passing{cycle}")
        sizes.append(stored(writer, "changes_count", -1))
    assert max(sizes) <= 2 * 12 + 6 and stored(writer, "history_start") > 0
    assert reader.identify(centres[1], k=3, closed_set=True).identity == "p001" and reader.check()["consistent"]
    with monkeypatch.context() as patch:
        _fail_collection_writes(patch)
        with pytest.raises(OSError):
            writer.enroll("late", [centres[0] + centres[2]])  # committed; the collection never gets it
    assert writer.index.synced() >= stored(writer, "history_start")  # the changes it lacks are all kept
    reader.close()
    writer.close()
    reopened = Gallery(tmp_path / "g")
    assert reopened.stats()["index"]["rebuilt_reason"] is None  # replayed, not rebuilt
    assert reopened.identify(unit32(centres[0] + centres[2]), k=1, closed_set=True).identity == "late"
    assert reopened.check()["consistent"]
    reopened.close()


def test_identify_beyond_the_milvus_result_cap_says_it_lists_fewer_than_k(tmp_path, monkeypatch, caplog):
    from faceid.gallery.index import milvus_index

    monkeypatch.setattr(milvus_index, "MAX_RESULTS", 8)
    search = milvus_index.MilvusIndex.search

    def like_milvus(self, queries, k):  # Milvus refuses a search for more results than its limit
        if min(k, len(self)) > milvus_index.MAX_RESULTS:
            raise RuntimeError(f"topk [{k}] is invalid, it should be in range [1, {milvus_index.MAX_RESULTS}]")
        return search(self, queries, k)

    monkeypatch.setattr(milvus_index.MilvusIndex, "search", like_milvus)
    people, centres = synthetic_people(3, per_person=2)
    people["crowd"] = unit32(centres[0] + 0.05 * np.random.default_rng(4).normal(size=(12, DIM)))  # 12 > the cap
    gallery = embeddings_gallery(tmp_path / "g", "milvus")
    gallery.enroll_many(people)
    crowded, clear = gallery.identify_many([centres[0], centres[2]], k=3, closed_set=True)
    expected = float((people["crowd"] @ centres[0]).max())
    assert crowded.identity == "crowd" and crowded.candidates == [("crowd", pytest.approx(expected, abs=1e-5))]
    assert not crowded.complete and "fewer than k=3 identities for 1 probe(s)" in caplog.text
    assert clear.complete and len(clear.candidates) == 3 and clear.identity == "p002"
    assert gallery.identify(centres[0], k=1, closed_set=True).complete
    gallery.close()


def test_a_reader_repairs_a_collection_left_behind_by_a_dead_writer_but_never_waits_for_a_live_one(
        tmp_path, monkeypatch):
    import threading

    from faceid.gallery.store.writer_lock import writer_lock

    people, centres = synthetic_people(4)
    writer = embeddings_gallery(tmp_path / "g", "milvus")
    writer.enroll_many(people)
    reader = Gallery(tmp_path / "g")
    newcomer = unit32(centres[0] + centres[3])
    with monkeypatch.context() as patch:
        _fail_collection_writes(patch)
        with pytest.raises(OSError):
            writer.enroll("late", [newcomer])  # committed to SQLite; the collection never gets it
    locked, release = threading.Event(), threading.Event()

    def live_writer():  # another writer, between its commit and its update of the collection
        with writer_lock(tmp_path / "g"):
            locked.set()
            release.wait(30)

    holder = threading.Thread(target=live_writer)
    holder.start()
    try:
        assert locked.wait(TIMEOUT), f"the other writer did not take the writer lock within {TIMEOUT:g} s"
        # answered at once, without the new template
        assert reader.identify(newcomer, k=1, closed_set=True).identity != "late"
    finally:
        release.set()
        holder.join()
    assert reader.identify(newcomer, k=1, closed_set=True).candidates[0] == ("late", pytest.approx(1.0, abs=1e-5))
    assert reader.index.synced() == stored(reader, "generation") and reader.check()["consistent"]
    reader.close()
    writer.close()
