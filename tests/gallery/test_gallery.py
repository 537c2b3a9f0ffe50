import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from faceid.arrays import l2_normalize
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.gallery.calibration import calibrate
from faceid.gallery.gallery import Gallery, GalleryError
from faceid.gallery.transfer import export_gallery, import_gallery, reembed_gallery
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.doubles import embeddings_gallery, stored, synthetic_people
from tests.waiting import printed, read_until, wait_for, wait_for_exit

DIM = 16
_people = functools.partial(synthetic_people, per_person=3, spread=0.35, prefix="person", dtype=np.float64)


def test_identify_matches_a_brute_force_reference(tmp_path, backend):
    people, centres = _people(40)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    names = [n for n, v in people.items() for _ in v]
    matrix = np.concatenate(list(people.values()))
    rng = np.random.default_rng(1)
    probes = l2_normalize(centres[rng.integers(0, 40, 25)] + 0.4 * rng.normal(size=(25, DIM))).astype(np.float32)
    for probe, result in zip(probes, gallery.identify_many(list(probes), k=5, closed_set=True), strict=True):
        scores = matrix @ probe
        best = {}
        for name, score in sorted(zip(names, scores, strict=True), key=lambda t: -t[1]):
            best.setdefault(name, score)
        expected = list(best.items())[:5]
        assert [n for n, _ in result.candidates] == [n for n, _ in expected]
        assert np.allclose([s for _, s in result.candidates], [s for _, s in expected], atol=1e-5)


@pytest.mark.parametrize("policy", ["all", "mean"])
def test_verify_and_open_set_unknowns(tmp_path, policy, backend):
    people, centres = _people(10)
    gallery = embeddings_gallery(tmp_path / "g", backend, template_policy=policy)
    gallery.enroll_many(people)
    genuine = l2_normalize(centres[3] + 0.1 * np.random.default_rng(5).normal(size=DIM))
    decision = gallery.verify(genuine, "person003", threshold=0.4)
    assert decision.accepted and decision.threshold == 0.4
    assert decision.threshold_source == {"source": "request", "policy": "stricter"}
    if policy == "mean":
        mean = l2_normalize(people["person003"].mean(0))
        assert decision.score == pytest.approx(float(genuine @ mean), abs=1e-5)
    else:
        assert decision.score == pytest.approx(float((people["person003"] @ genuine).max()), abs=1e-5)
    stranger = l2_normalize(np.random.default_rng(9).normal(size=DIM))
    result = gallery.identify(stranger, k=3, threshold=0.9)
    assert result.identity == "unknown" and len(result.candidates) == 3
    assert gallery.identify(genuine, k=3, threshold=0.4).identity == "person003"
    assert not gallery.verify(stranger, "person003", threshold=0.9).accepted


def test_calibrated_threshold_is_used_and_reported(tmp_path, backend):
    people, _ = _people(5)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    rng = np.random.default_rng(0)
    scores = np.r_[rng.normal(0.8, 0.1, 2000), rng.normal(0.1, 0.1, 2000)]
    is_same = np.r_[np.ones(2000, bool), np.zeros(2000, bool)]
    result = calibrate(gallery, scores, is_same, target_far=1e-3)
    assert result["far"] <= 1e-3 and 0.3 < result["threshold"] < 0.6
    decision = gallery.verify(people["person001"][0], "person001")
    assert decision.threshold == pytest.approx(result["threshold"])
    assert decision.threshold_source["source"] == "calibrate" and decision.threshold_source["target_far"] == 1e-3
    with pytest.raises(GalleryError, match="cannot measure FAR"):
        calibrate(gallery, scores[1990:2010], is_same[1990:2010], target_far=1e-3)


def test_persistence_across_processes(tmp_path, backend):
    people, _ = _people(6)
    with embeddings_gallery(tmp_path / "g", backend) as gallery:
        gallery.enroll_many(people)
    script = textwrap.dedent(f"""
        import json, numpy as np
        from faceid.gallery.gallery import Gallery
        g = Gallery({str(tmp_path / 'g')!r})
        top = g.identify(np.array({people['person004'][1].tolist()}), k=1, closed_set=True).candidates[0][0]
        print(json.dumps({{"stats": g.stats()["templates"], "top": top}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {"stats": 18, "top": "person004"}


def test_remove_rename_duplicates_and_audit(tmp_path, backend):
    people, _ = _people(4)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    again = gallery.enroll("person000", list(people["person000"][:2]) + [people["person001"][0]])
    assert again["added"] == 1 and len(again["duplicates"]) == 2
    assert gallery.remove("person002") == 3
    gallery.rename("person003", "alice")
    assert [i["identity"] for i in gallery.list()] == ["alice", "person000", "person001"]
    assert gallery.identify(people["person003"][0], k=1, closed_set=True).candidates[0][0] == "alice"
    assert all(c[0] != "person002" for c in gallery.identify(people["person002"][0], k=3, closed_set=True).candidates)
    actions = [entry["action"] for entry in gallery.audit_log()]
    assert actions[0] == "create" and actions[-2:] == ["remove", "rename"]
    database = sqlite3.connect(gallery.path / "gallery.db", isolation_level=None)  # autocommit: no lock is kept
    with pytest.raises(Exception, match="append-only"):
        database.execute("DELETE FROM audit")
    database.close()
    with pytest.raises(GalleryError, match="not enrolled"):
        gallery.remove("nobody")
    with pytest.raises(GalleryError, match="already exists"):
        gallery.rename("alice", "person000")


def test_identity_gives_the_summary_and_its_templates_and_labels_name_duplicates(tmp_path):
    people, _ = _people(2)
    gallery = embeddings_gallery(tmp_path / "g")
    gallery.enroll("person000", people["person000"], {"team": "a"})
    again = gallery.enroll("person000", [people["person000"][1], people["person001"][0]], labels=["x.png", "y.png"])
    assert again == {"added": 1, "duplicates": ["x.png"]}
    record = gallery.identity("person000")
    assert {key: record[key] for key in ("identity", "templates", "metadata")} == {
        "identity": "person000", "templates": 4, "metadata": {"team": "a"}}
    assert record["created"] == gallery.list()[0]["created"]
    samples = record["samples"]
    assert [s["template"] for s in samples] == sorted(s["template"] for s in samples) and len(samples) == 4
    assert set(samples[0]) == {"template", "source", "file_hash", "quality", "created"}
    assert samples[0]["source"] is None and len(samples[0]["file_hash"]) == 64  # an embedding has no file
    with pytest.raises(GalleryError, match="'nobody' is not enrolled"):
        gallery.identity("nobody")


def test_bad_input_names_the_input_and_writes_nothing(tmp_path, backend):
    people, _ = _people(2)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    before = gallery.stats()
    nan = np.full(DIM, np.nan)
    with pytest.raises(GalleryError, match=r"input 1: embedding contains NaN"):
        gallery.enroll("bob", [people["person000"][0] * 0 + 1, nan])
    with pytest.raises(GalleryError, match=r"input 0: embedding has dimension 8, the gallery holds 16"):
        gallery.enroll("bob", [np.ones(8)])
    with pytest.raises(GalleryError, match="all zeros"):
        gallery.identify(np.zeros(DIM))
    with pytest.raises(GalleryError, match="images need the gallery to be opened with an embedder"):
        gallery.enroll("bob", [tmp_path / "face.png"])
    after = gallery.stats()
    assert (after["templates"], after["identities"], after["generation"]) == (before["templates"], before["identities"],
                                                                              before["generation"])


def test_images_through_the_embedder_and_preprocessor_errors(tmp_path, small_synthetic, backend):
    embedder = TorchEmbedder.untrained("small_cnn", DIM, 64, device="cpu")
    images = list_identity_folder(small_synthetic / "aligned")
    gallery = Gallery.create(tmp_path / "g", embedder, backend=backend)
    result = gallery.enroll("id0", [i.path for i in images if i.identity == "id_00000"][:3])
    assert result["added"] == 3
    probe = [i.path for i in images if i.identity == "id_00000"][3]
    assert gallery.identify(probe, k=1, closed_set=True).candidates[0][0] == "id0"
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(GalleryError, match=r"broken.png: not a readable image"):
        gallery.enroll("id1", [images[5].path, tmp_path / "broken.png"])
    assert [i["identity"] for i in gallery.list()] == ["id0"]
    from faceid.preprocessing import FacePreprocessor

    strict = Gallery(tmp_path / "g", embedder, FacePreprocessor(device="cpu"))
    blank = np.full((120, 120, 3), 128, np.uint8)
    with pytest.raises(GalleryError, match="input 0: no face found"):
        strict.enroll("id2", [blank])


def test_a_different_embedder_is_refused_and_reembed_migrates(tmp_path, small_synthetic, backend):
    first = TorchEmbedder.untrained("small_cnn", DIM, 64, seed=0, device="cpu")
    second = TorchEmbedder.untrained("small_cnn", DIM, 64, seed=1, device="cpu")
    images = [i.path for i in list_identity_folder(small_synthetic / "aligned")[:6]]
    gallery = Gallery.create(tmp_path / "g", first, backend=backend)
    gallery.enroll("a", images[:3])
    gallery.enroll("b", images[3:])
    gallery.close()
    with pytest.raises(GalleryError, match="Use `reembed` to migrate"):
        Gallery(tmp_path / "g", second)
    with Gallery(tmp_path / "g", first) as old:
        assert reembed_gallery(old, second)["templates"] == 6
    reopened = Gallery(tmp_path / "g", second)
    assert reopened.check()["consistent"] and reopened.check()["vectors_compared"]
    probe = second.embed([read_rgb(images[4])])[0]
    assert reopened.identify(probe, k=1, closed_set=True).candidates[0] == ("b", pytest.approx(1.0, abs=1e-5))


def test_export_and_import(tmp_path, backend):
    people, _ = _people(5)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people, {"person001": {"badge": 7}})
    export_gallery(gallery, tmp_path / "g.npz")
    other = embeddings_gallery(tmp_path / "h", backend)
    import_gallery(other, tmp_path / "g.npz")
    assert other.stats()["templates"] == 15
    assert {i["identity"]: i["metadata"] for i in other.list()}["person001"] == {"badge": 7}
    assert import_gallery(other, tmp_path / "g.npz")["person000"]["added"] == 0  # duplicates are skipped
    stranger = embeddings_gallery(tmp_path / "x", backend, fingerprint="other")
    with pytest.raises(GalleryError, match="was made with embedder test-embedder"):
        import_gallery(stranger, tmp_path / "g.npz")


# FAISS factory strings; the Milvus index types have their own test (test_milvus.py)
@pytest.mark.parametrize("factory, parameters", [("HNSW32,Flat", {"efSearch": 64}), ("IVF16,Flat", {"nprobe": 8})])
def test_approximate_indexes_recall_and_removal(tmp_path, factory, parameters):
    people, centres = _people(300, per_person=2)
    gallery = embeddings_gallery(tmp_path / "g", index_factory=factory, search_parameters=parameters)
    gallery.enroll_many(people)
    exact = embeddings_gallery(tmp_path / "exact")
    exact.enroll_many(people)
    probes = list(l2_normalize(centres[:100] + 0.3 * np.random.default_rng(2).normal(size=(100, DIM))))
    approximate_top = [r.candidates[0][0] for r in gallery.identify_many(probes, k=1, closed_set=True)]
    exact_top = [r.candidates[0][0] for r in exact.identify_many(probes, k=1, closed_set=True)]
    assert np.mean([a == b for a, b in zip(approximate_top, exact_top, strict=True)]) >= 0.9
    gallery.remove("person000")
    assert len(gallery.index) == 598
    with pytest.raises(ValueError, match="FAISS cannot build index"):
        embeddings_gallery(tmp_path / "bad", index_factory="NotAnIndex")


def test_a_crash_between_commit_and_index_write_is_repaired_on_open(tmp_path, monkeypatch, backend):
    people, _ = _people(3)
    gallery = embeddings_gallery(tmp_path / "g", backend)
    gallery.enroll_many(people)
    index_type = type(gallery.index)
    original_add = index_type.add
    monkeypatch.setattr(index_type, "add", lambda *a, **k: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(OSError):
        gallery.enroll("late", [l2_normalize(np.ones(DIM))])  # committed to SQLite, index write 'crashed'
    monkeypatch.setattr(index_type, "add", original_add)
    gallery.close()
    reopened = Gallery(tmp_path / "g")
    assert reopened.identify(l2_normalize(np.ones(DIM)), k=1, closed_set=True).candidates[0][0] == "late"
    assert len(reopened.index) == 10


def test_a_missing_index_file_is_rebuilt(tmp_path):  # the FAISS snapshot; Milvus: test_milvus.py
    people, _ = _people(3)
    embeddings_gallery(tmp_path / "g").enroll_many(people)
    for file in (tmp_path / "g").glob("index.*.faiss"):
        file.unlink()
    assert len(Gallery(tmp_path / "g").index) == 9


CRASH_WRITER = """
import sys, numpy as np
from faceid.gallery.gallery import Gallery
g = Gallery(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
i = 0
while True:
    v = rng.normal(size=(2, {dim}))
    g.enroll(f"{{sys.argv[2]}}-{{i}}", list(v / np.linalg.norm(v, axis=1, keepdims=True)))
    print(i, flush=True)
    i += 1
"""


@pytest.mark.slow
def test_killing_a_writer_mid_enrolment_loses_nothing_committed(tmp_path, backend):
    embeddings_gallery(tmp_path / "g", backend).close()
    for attempt in range(3):
        process = subprocess.Popen([sys.executable, "-c", CRASH_WRITER.format(dim=DIM), str(tmp_path / "g"),
                                    str(attempt)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # killed as soon as it has reported its 1st, 5th, 9th enrolment, while it goes on with the next
        kill_after = 4 * attempt
        read_until(process, rf"^{kill_after}$", what=f"the writer to report enrolment {kill_after} (it reports each)")
        os.kill(process.pid, signal.SIGKILL)
        lines, _ = wait_for_exit(process)
        reported = len(lines)
        gallery = Gallery(tmp_path / "g")
        committed = [e for e in gallery.audit_log()
                     if e["action"] == "enroll" and e["identity"].startswith(f"{attempt}-")]
        assert len(committed) >= reported > 0  # every enrolment that returned is there
        names = {i["identity"] for i in gallery.list()}
        assert {e["identity"] for e in committed} <= names
        assert len(gallery.index) == gallery.stats()["templates"] and gallery.check()["consistent"]
        last = committed[-1]["identity"]
        vectors = stored(gallery, "templates_of", stored(gallery, "identity_id", last))
        assert gallery.identify(vectors[0], k=1, closed_set=True).candidates[0][0] == last
        gallery.close()


READER = """
import os, sys, numpy as np
from faceid.gallery.gallery import Gallery
g = Gallery(sys.argv[1])
probe = np.ones({dim}) / np.sqrt({dim})
assert g.identify(probe, k=3, closed_set=True).candidates, "empty result"
print("ready", flush=True)
count = 0
while not os.path.exists(sys.argv[2]):  # the test's writer has finished
    result = g.identify(probe, k=3, closed_set=True)
    assert result.candidates, "empty result"
    count += 1
    if count % 10 == 0:
        print(count, flush=True)
print("done", count, flush=True)
"""


@pytest.mark.slow
def test_readers_keep_working_while_one_writer_enrolls(tmp_path, shared_backend):
    gallery = embeddings_gallery(tmp_path / "g", **shared_backend)
    gallery.enroll("seed", [np.ones(DIM) / np.sqrt(DIM)])
    stop = tmp_path / "writer-finished"
    readers = [subprocess.Popen([sys.executable, "-c", READER.format(dim=DIM), str(tmp_path / "g"), str(stop)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for reader in readers:  # both readers are querying before the writer starts
        read_until(reader, "^ready$", what="a reader to open the gallery and answer a first query")
    before = [len(printed(reader)) for reader in readers]
    rng = np.random.default_rng(0)
    enrolled = 0

    def enrol_while_readers_answer():  # one more enrolment; enough once each reader answered over 10 queries meanwhile
        nonlocal enrolled
        for reader in readers:
            if reader.poll() is not None:
                raise AssertionError(f"a reader failed while the writer enrolled: {wait_for_exit(reader)[1]}")
        gallery.enroll(f"w{enrolled}", [l2_normalize(rng.normal(size=DIM))])
        enrolled += 1
        return enrolled > 5 and all(len(printed(r)) >= start + 2 for r, start in zip(readers, before, strict=True))

    wait_for(enrol_while_readers_answer, what="both readers to answer over 10 queries while the writer enrolls",
             interval=0)
    stop.touch()
    for reader in readers:
        lines, err = wait_for_exit(reader)
        assert reader.returncode == 0, err
        assert lines[-1].startswith("done") and int(lines[-1].split()[1]) > 10
    assert gallery.stats()["identities"] == enrolled + 1
