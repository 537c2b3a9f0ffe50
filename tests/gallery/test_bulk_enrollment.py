"""Bulk enrolment decodes, detects and embeds in batches, with parallel workers; a
corrupt or unreadable image is a per-file error in the summary, never fatal."""


import cv2
import numpy as np
import pytest

from faceid.gallery.enrollment import enroll_folder, enroll_images
from faceid.gallery.gallery import Gallery
from faceid.preprocessing import FacePreprocessor
from faceid.torch_embedder import TorchEmbedder
from tests.gallery.doubles import RecordingEmbedder, deny_reading, stored

DIM = 16


@pytest.fixture(scope="module")
def embedder():
    return TorchEmbedder.untrained("small_cnn", DIM, 64, device="cpu")


@pytest.fixture
def tree(tmp_path):
    """`alice` (3 good, 1 corrupt), `bob` (2 good, 1 unreadable) and `carol` (2 good) aligned crops."""
    rng = np.random.default_rng(0)
    root = tmp_path / "tree"
    for identity, count in (("alice", 3), ("bob", 2), ("carol", 2)):
        (root / identity).mkdir(parents=True)
        for k in range(count):
            cv2.imwrite(str(root / identity / f"{k}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (root / "alice" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    locked = root / "bob" / "locked.png"
    cv2.imwrite(str(locked), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    locked.chmod(0)
    yield root
    locked.chmod(0o644)


def test_folder_with_corrupt_and_unreadable_files_enrolls_every_good_one(tmp_path, tree, embedder, monkeypatch,
                                                                          backend):
    deny_reading(monkeypatch, tree / "bob" / "locked.png")
    counting = RecordingEmbedder(embedder)
    gallery = Gallery.create(tmp_path / "g", counting, backend=backend)
    summary = enroll_folder(gallery, tree, progress=False)
    assert summary["images"] == 9 and summary["enrolled_samples"] == 7 and summary["identities"] == 3
    assert summary["failed"] == 2
    assert "not a readable image" in summary["failures"][str(tree / "alice" / "corrupt.jpg")]
    assert "permission denied" in summary["failures"][str(tree / "bob" / "locked.png")].lower()
    assert {i["identity"]: i["templates"] for i in gallery.list()} == {"alice": 3, "bob": 2, "carol": 2}
    assert counting.batches == [7]  # one embedder call for the whole folder
    gallery.close()


def test_parallel_workers_give_the_same_templates_as_one_by_one_enrolment(tmp_path, tree, embedder, backend):
    one_by_one = Gallery.create(tmp_path / "single", embedder, backend=backend)
    for image in sorted((tree / "alice").glob("*.png")):
        one_by_one.enroll("alice", [image])
    parallel = Gallery.create(tmp_path / "parallel", embedder, backend=backend)
    summary = enroll_images(parallel, "alice", sorted((tree / "alice").iterdir()), workers=2, progress=False)
    assert summary["enrolled_samples"] == 3 and list(summary["failures"]) == [str(tree / "alice" / "corrupt.jpg")]
    _, _, expected = stored(one_by_one, "all_templates")
    _, _, batched = stored(parallel, "all_templates")
    assert np.allclose(expected, batched, atol=1e-5)
    assert parallel.check()["consistent"]
    assert parallel.identify(expected[1], k=1, closed_set=True).candidates[0][0] == "alice"
    one_by_one.close()
    parallel.close()


def test_enroll_many_on_photos_detects_and_embeds_in_one_batch(tmp_path, shared_data, embedder, backend):
    photos = {person: sorted((shared_data / "orl" / person).glob("*.pgm"))[:2] for person in ("s1", "s2")}
    if sum(len(p) for p in photos.values()) < 4:
        pytest.skip(f"ORL faces not found under {shared_data / 'orl'}")
    preprocessor = FacePreprocessor(device="cpu", size=64)
    single = Gallery.create(tmp_path / "single", embedder, preprocessor=preprocessor, backend=backend)
    for person, images in photos.items():
        for image in images:
            single.enroll(person, [image])
    calls = []
    many = preprocessor.many
    preprocessor.many = lambda images: calls.append(len(images)) or many(images)
    counting = RecordingEmbedder(embedder)
    batched = Gallery.create(tmp_path / "batched", counting, preprocessor=preprocessor, backend=backend)
    batched.enroll_many(photos)
    assert calls == [2, 2] and counting.batches == [2, 2]  # each identity's photos detected and embedded together
    _, owners_single, expected = stored(single, "all_templates")
    _, owners_batched, got = stored(batched, "all_templates")
    assert np.array_equal(owners_single, owners_batched)
    assert np.allclose(expected, got, atol=1e-4)
    single.close()
    batched.close()


def test_an_image_the_detector_chokes_on_fails_alone(tmp_path):
    from faceid.gallery.samples.resolver import PreparedFace, prepare_faces

    tiny = np.zeros((8, 8, 3), np.uint8)  # below the detector's smallest face: MTCNN raises on it
    results = prepare_faces([tiny, tmp_path / "missing.png", tiny], ["first", "second", "third"],
                            FacePreprocessor(device="cpu"))
    assert str(results[0]).startswith("first: face detection failed (") and str(results[1]) == "second: no such file"
    assert str(results[2]).startswith("third: face detection failed (")
    assert not any(isinstance(r, PreparedFace) for r in results)
