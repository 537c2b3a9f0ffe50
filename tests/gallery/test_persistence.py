"""Gallery persistence: snapshots + replay, crash safety at each step, checksums, damaged databases, housekeeping.

Tests taking `backend` run on FAISS and Milvus; the others are about FAISS itself — its snapshot files and their
checksums, an HNSW factory that cannot remove in place, the FAISS write benchmark (Milvus keeps its own index:
the analogues are in test_milvus.py)."""

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from faceid.cli import main
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.store import database as store_module
from tests.gallery.conftest import MILVUS
from tests.gallery.doubles import embeddings_gallery, synthetic_people, unit32
from tests.waiting import read_until, wait_for, wait_for_exit

DIM = 16
ROOT = Path(__file__).resolve().parents[2]  # the repository: tests.waiting for the child processes





def _answers(gallery, probes):
    return [(r.identity, [(n, round(s, 5)) for n, s in r.candidates])
            for r in gallery.identify_many(probes, k=3, closed_set=True)]


def _snapshots(folder):
    return sorted(p.name for p in folder.glob("index.*.faiss"))


def test_writes_change_the_index_in_place_and_a_reopen_replays_them(tmp_path):
    people, centres = synthetic_people(20)
    gallery = embeddings_gallery(tmp_path / "g")
    gallery.enroll_many(people)
    gallery.snapshot()
    snapshot = _snapshots(tmp_path / "g")
    gallery.enroll("late", [centres[0]])
    gallery.remove("p001")
    gallery.rename("p002", "renamed")
    assert _snapshots(tmp_path / "g") == snapshot  # no index file written per write
    expected = _answers(gallery, list(centres))
    gallery.close()  # no snapshot is due yet: the changes stay to be replayed
    reopened = Gallery(tmp_path / "g")
    state = reopened.stats()["index"]
    assert state["snapshot_generation"] == int(snapshot[0].split(".")[1]) and state["rebuilt_reason"] is None
    assert state["replayed_changes"] == 3  # late's template and p001's two (the rename moves no vector)
    assert _answers(reopened, list(centres)) == expected and reopened.check()["consistent"]


@pytest.mark.parametrize("policy", ["all", "mean"])
def test_another_process_sees_a_write_within_a_second_by_replaying_it(tmp_path, policy, shared_backend):
    people, _ = synthetic_people(200)
    gallery = embeddings_gallery(tmp_path / "g", template_policy=policy, **shared_backend)
    gallery.enroll_many(people)
    probe = unit32(np.ones(DIM))
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json, sys, time, numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        from tests.waiting import wait_for
        from faceid.gallery.gallery import Gallery
        g = Gallery({str(tmp_path / 'g')!r})
        probe = np.array({probe.tolist()}, np.float32)
        print("ready", flush=True)
        wait_for(lambda: g.identify(probe, k=1, closed_set=True).candidates[0][0] == "newcomer", interval=0.01,
                 what="the newcomer to be this process's best candidate")
        print(json.dumps({{"seen": time.time(), "index": g.stats()["index"]}}), flush=True)
    """)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_until(reader, "^ready$", what="the reader to open the gallery")
    gallery.enroll("newcomer", [probe])
    written = time.time()
    report = json.loads(read_until(reader, "^{", what="the reader to find the newcomer").string)
    _, err = wait_for_exit(reader)
    assert reader.returncode == 0, err
    assert report["seen"] - written < 1.0
    assert report["index"]["replayed_changes"] >= 1 and report["index"]["rebuilt_reason"] is None


CRASHING_WRITER = """
import os, sys, numpy as np
from faceid.gallery import gallery
from faceid.gallery.index import live_index
from faceid.gallery.store import writes
step = sys.argv[2]
g = gallery.Gallery(sys.argv[1])
if step == "after-commit":  # the transaction committed; the process dies before its in-memory index follows
    live_index.LiveIndex.refresh = lambda self, own_write=False: own_write and os._exit(9)
if step == "snapshot-write":  # the temporary snapshot is written, the process dies before its fsync and rename
    os.fsync = lambda descriptor: os._exit(9)
if step == "before-record":  # the snapshot is durable, the process dies before its checksum is recorded
    writes.StoreWrite.record_snapshot = lambda *arguments: os._exit(9)
g.enroll("crash", [np.ones({dim}, np.float32)])
g.snapshot()
"""


@pytest.mark.parametrize("backend, step", [  # the snapshot steps are FAISS's: Milvus writes no snapshot
    ("faiss", "after-commit"), ("faiss", "snapshot-write"), ("faiss", "before-record"),
    pytest.param("milvus", "after-commit", marks=MILVUS.marks)])
def test_a_writer_killed_at_each_step_of_a_write_or_snapshot_loses_nothing(tmp_path, backend, step):
    people, centres = synthetic_people(30)
    with embeddings_gallery(tmp_path / "g", backend) as gallery:
        gallery.enroll_many(people)
        gallery.remove("p003")
        expected = _answers(gallery, list(centres))
    process = subprocess.run([sys.executable, "-c", CRASHING_WRITER.format(dim=DIM), str(tmp_path / "g"), step])
    assert process.returncode == 9
    reopened = Gallery(tmp_path / "g")
    best = reopened.identify(np.ones(DIM), k=1, closed_set=True).candidates[0]
    assert best == ("crash", pytest.approx(1.0, abs=1e-5))
    reopened.remove("crash")
    assert _answers(reopened, list(centres)) == expected
    assert reopened.check()["consistent"] and len(reopened.index) == reopened.stats()["templates"]
    assert not list((tmp_path / "g").glob(".index.*.tmp.faiss"))  # the dead writer's temporary is gone


def test_random_corruptions_of_the_snapshot_never_give_a_wrong_answer(tmp_path):
    people, centres = synthetic_people(40)
    folder = tmp_path / "g"
    with embeddings_gallery(folder) as gallery:
        gallery.enroll_many(people)
        gallery.snapshot()
        probes = list(unit32(centres + 0.2 * np.random.default_rng(1).normal(size=centres.shape)))
        expected = _answers(gallery, probes)
    snapshot = next(folder.glob("index.*.faiss"))
    intact = snapshot.read_bytes()
    rng = np.random.default_rng(12)
    rebuilt = 0
    for _ in range(120):
        damaged, length = bytearray(intact), int(rng.integers(1, 9))
        start = int(rng.integers(0, len(intact) - length))
        damaged[start:start + length] = rng.bytes(length)
        snapshot.write_bytes(bytes(damaged))
        try:
            gallery = Gallery(folder)
        except GalleryError:
            continue  # a clear refusal is allowed; a wrong answer is not
        assert _answers(gallery, probes) == expected
        rebuilt += gallery.stats()["index"]["rebuilt_reason"] is not None
        gallery.close()
    assert rebuilt > 100


def test_a_float_planted_in_the_snapshot_is_caught_and_reported(tmp_path):
    people, centres = synthetic_people(10)
    with embeddings_gallery(tmp_path / "g") as gallery:
        gallery.enroll_many(people)
        gallery.snapshot()
    snapshot = next((tmp_path / "g").glob("index.*.faiss"))
    damaged = bytearray(snapshot.read_bytes())
    damaged[200:204] = np.float32(1e30).tobytes()
    snapshot.write_bytes(bytes(damaged))
    report_of_check = Gallery(tmp_path / "g").check()
    assert not report_of_check["consistent"] and "damaged" in report_of_check["snapshot"]
    reopened = Gallery(tmp_path / "g")
    assert "damaged" in reopened.stats()["index"]["rebuilt_reason"]
    assert reopened.identify(centres[4], k=1, closed_set=True).candidates[0][0] == "p004"
    reopened.enroll("x", [centres[0]])  # the first write replaces the damaged snapshot
    assert Gallery(tmp_path / "g").stats()["index"]["rebuilt_reason"] is None


def test_check_compares_the_index_with_the_store_vector_by_vector(tmp_path, capsys, backend):
    people, _ = synthetic_people(5)
    with embeddings_gallery(tmp_path / "g", backend) as gallery:
        gallery.enroll_many(people)
    assert main(["gallery", "check", "--json", str(tmp_path / "g")]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    gallery = Gallery(tmp_path / "g")
    ids, vectors = gallery.index.content()
    gallery.index.remove(ids[3:4])  # a vector damaged in the index (FAISS: in memory; Milvus: in the collection)
    gallery.index.add(ids[3:4], -vectors[3:4])
    report = gallery.check()
    assert not report["consistent"] and report["mismatched"] == [int(ids[3])] and report["vectors_compared"]
    gallery.close()


@pytest.mark.parametrize("damage, message", [
    ("garbage", "is not a SQLite database"), ("truncated", "is truncated"), ("empty", "is empty \\(0 bytes\\)"),
    ("foreign", "is a SQLite database but not a faceid gallery \\(its tables: users\\)")])
def test_a_damaged_or_foreign_gallery_db_is_a_clear_error(tmp_path, capsys, damage, message, backend):
    people, _ = synthetic_people(200, per_person=4)
    with embeddings_gallery(tmp_path / "g", backend) as gallery:
        gallery.enroll_many(people)
    database = tmp_path / "g" / "gallery.db"
    content = database.read_bytes()
    if damage == "garbage":
        database.write_bytes(np.random.default_rng(0).bytes(len(content)))
    elif damage == "truncated":
        database.write_bytes(content[:len(content) // 2])
    elif damage == "empty":
        database.write_bytes(b"")
    else:
        database.unlink()
        with sqlite3.connect(database) as foreign:
            foreign.execute("CREATE TABLE users (name TEXT)")
        foreign.close()
    with pytest.raises(GalleryError, match=f"gallery.db {message}"):
        Gallery(tmp_path / "g")
    assert main(["gallery", "stats", "--json", str(tmp_path / "g")]) == 2
    error = capsys.readouterr().err
    assert "gallery.db" in error and "Traceback" not in error
    if damage in ("garbage", "truncated"):
        assert "restore gallery.db from a backup" in error and "faceid gallery import" in error


def test_a_writer_removes_temporaries_of_dead_writers(tmp_path):
    people, _ = synthetic_people(3)
    gallery = embeddings_gallery(tmp_path / "g")
    gallery.enroll_many(people)
    gallery.close()
    folder = tmp_path / "g"
    recorded = _snapshots(folder)
    stale = [folder / ".index.7.k2j3h4.tmp.faiss", folder / "index.5.12345.tmp", folder / "index.99.faiss"]
    for file in stale:
        file.write_bytes(b"x" * 100)
    reader = Gallery(folder)
    assert all(f.exists() for f in stale)  # a reader does not hold the writer lock: it removes nothing
    reader.enroll("new", [np.ones(DIM)])
    assert not any(f.exists() for f in stale) and _snapshots(folder) == recorded


def test_the_write_ahead_log_is_truncated_after_a_bulk_enrolment(tmp_path, monkeypatch, backend):
    monkeypatch.setattr(store_module, "WAL_LIMIT_BYTES", 64 * 1024)
    people, _ = synthetic_people(2000, per_person=1)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    assert gallery.stats()["wal_bytes"] <= 64 * 1024
    assert gallery.stats()["templates"] == 2000


def test_an_index_that_cannot_remove_in_place_is_rebuilt_and_snapshotted(tmp_path):
    people, centres = synthetic_people(50)
    gallery = embeddings_gallery(tmp_path / "g", index_factory="HNSW16,Flat")
    gallery.enroll_many(people)
    gallery.remove("p000")
    state = gallery.stats()["index"]
    assert "cannot change in place" in state["rebuilt_reason"]
    assert state["snapshot_generation"] == gallery.stats()["generation"]
    gallery.close()
    reopened = Gallery(tmp_path / "g")
    assert reopened.stats()["index"]["rebuilt_reason"] is None and len(reopened.index) == 98


def test_a_snapshot_is_written_in_the_background_once_enough_changed(tmp_path, monkeypatch):
    from faceid.gallery.index import live_index

    monkeypatch.setattr(live_index, "SNAPSHOT_CHANGES", 10)
    people, _ = synthetic_people(8)
    gallery = embeddings_gallery(tmp_path / "g")
    first = _snapshots(tmp_path / "g")
    gallery.enroll_many(people)  # 8 identities + 16 templates changed
    wait_for(lambda: gallery.setting("snapshot")["generation"] == gallery.stats()["generation"],
             what="the background snapshot of the newest generation")
    assert _snapshots(tmp_path / "g") != first
