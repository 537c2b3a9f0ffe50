"""A new user's traps, each written so that it failed before it was mended: uncalibrated galleries naming strangers,
calibration that embeds for minutes and then refuses, half-made galleries, model mismatches that fetch first, and
messages that do not help."""

import numpy as np
import pytest
from PIL import Image

from faceid.cli import main
from faceid.gallery.gallery import Gallery
from faceid.gallery.session import open_gallery
from faceid.gallery.threshold_policy import NoThreshold

DIM = 16


def _unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture
def uncalibrated(tmp_path) -> Gallery:
    """A gallery of a custom model: no default threshold, none calibrated."""
    gallery = Gallery.create(tmp_path / "g", fingerprint={"fingerprint": "custom", "embedding_dim": DIM})
    gallery.enroll("alice", [_unit(1)])
    gallery.enroll("bob", [_unit(2)])
    yield gallery
    gallery.close()


def test_a_gallery_without_a_threshold_refuses_open_set_identification(uncalibrated):
    with pytest.raises(NoThreshold, match="gallery calibrate") as refused:
        uncalibrated.identify(_unit(99))
    assert "--closed-set" in str(refused.value) and "--threshold" in str(refused.value)
    with pytest.raises(NoThreshold):
        uncalibrated.verify(_unit(99), "alice")


def test_closed_set_names_the_best_candidate_and_says_so(uncalibrated):
    result = uncalibrated.identify(_unit(99), closed_set=True)
    assert result.identity in ("alice", "bob") and result.threshold is None
    assert result.threshold_source == {"source": "closed set"}
    assert uncalibrated.identify(_unit(1), threshold=0.5).identity == "alice"


def _faces(root, people: int, each: int, size: int = 8):
    for person in range(people):
        folder = root / f"p{person}"
        folder.mkdir(parents=True)
        for number in range(each):
            pixels = np.random.default_rng(person * 100 + number).integers(0, 255, (size, size, 3), np.uint8)
            Image.fromarray(pixels).save(folder / f"{number}.png")
    return root


def test_calibration_counts_pairs_before_embedding_and_offers_the_smallest_far(tmp_path, monkeypatch, capsys):
    data = _faces(tmp_path / "people", people=3, each=2)  # 15 pairs, 3 genuine: 12 impostor pairs
    open_gallery(tmp_path / "g", "pixels", aligned=True, create=True).close()
    import faceid.gallery.enrollment as enrollment

    monkeypatch.setattr(enrollment, "resolve_paths", lambda *a, **k: pytest.fail("embedded before counting"))
    assert main(["gallery", "calibrate", str(tmp_path / "g"), "--data", str(data)]) == 2
    message = capsys.readouterr().err
    assert "12 impostor pairs" in message and "--target-far 8.4e-2" in message and "traceback" not in message.lower()


def test_calibration_uses_every_pair_and_records_the_people(tmp_path):
    data = _faces(tmp_path / "people", people=3, each=2)
    with open_gallery(tmp_path / "g", "pixels", aligned=True, create=True) as gallery:
        from faceid.gallery.calibration import calibrate_from_folder

        result = calibrate_from_folder(gallery, data, target_far=0.1, progress=False)
        stats = gallery.stats()
    assert result["pairs"] == 15 and result["people"] == 3
    assert stats["threshold_source"]["source"] == "calibrate"
    assert stats["threshold_description"] == "calibrated on 3 people at FAR 0.1"


def test_calibrate_help_shows_its_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["gallery", "calibrate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 0.001)" in text


def test_a_failed_enrolment_leaves_no_gallery(tmp_path, capsys):
    gallery = tmp_path / "G7"
    assert main(["enroll", str(gallery), "--model", "pixels", "--aligned", "--from-folder",
                 str(tmp_path / "does-not-exist")]) == 2
    assert not gallery.exists()
    broken = tmp_path / "broken" / "someone"
    broken.mkdir(parents=True)
    (broken / "a.jpg").write_bytes(b"not an image")
    assert main(["enroll", str(gallery), "--model", "pixels", "--aligned", "--from-folder", str(broken.parent)]) == 1
    assert not gallery.exists()
    assert "not created" in capsys.readouterr().out


def test_a_failed_enrolment_into_an_existing_folder_removes_only_what_it_made(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(["enroll", str(folder), "--model", "pixels", "--aligned", "--identity", "x",
                 str(tmp_path / "missing.jpg")]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]


def test_another_model_is_refused_by_name_before_anything_loads(tmp_path, monkeypatch, capsys):
    data = _faces(tmp_path / "people", people=2, each=1)
    assert main(["enroll", str(tmp_path / "g"), "--model", "pixels", "--aligned", "--from-folder", str(data)]) == 0
    import faceid.gallery.session as session
    import faceid.zoo.store as store

    monkeypatch.setattr(session, "load_embedder", lambda *a, **k: pytest.fail("a model was loaded"))
    monkeypatch.setattr(store, "download", lambda *a, **k: pytest.fail("a download started"))
    capsys.readouterr()
    assert main(["identify", str(tmp_path / "g"), "--model", "facenet_vggface2", str(data / "p0" / "0.png")]) == 2
    message = capsys.readouterr().err
    assert "enrolled with model pixels" in message and "facenet_vggface2" in message
    assert "every one of its 2 templates still has its image" in message and "faceid gallery reembed" in message
    probe = tmp_path / "probe.png"
    probe.write_bytes((data / "p0" / "0.png").read_bytes())
    for image in data.rglob("*.png"):
        image.unlink()
    assert main(["identify", str(tmp_path / "g"), "--model", "facenet_vggface2", str(probe)]) == 2
    assert "cannot be moved" in capsys.readouterr().err


def test_an_unknown_model_name_lists_the_known_ones(tmp_path, capsys):
    assert main(["enroll", str(tmp_path / "g"), "--model", "dlib_resnet_v2", "--identity", "x",
                 str(_faces(tmp_path / "people", 1, 1) / "p0" / "0.png")]) == 2
    message = capsys.readouterr().err
    assert "Did you mean dlib_resnet_v1?" in message and "sface" in message and "faceid models list" in message
    assert not (tmp_path / "g").exists()


def test_identify_takes_a_folder_of_probes(tmp_path, capsys):
    data = _faces(tmp_path / "people", people=2, each=2)
    assert main(["enroll", str(tmp_path / "g"), "--model", "pixels", "--aligned", "--from-folder", str(data)]) == 0
    capsys.readouterr()
    assert main(["identify", str(tmp_path / "g"), str(data / "p1"), "--closed-set", "--json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert [row["identity"] for row in rows] == ["p1", "p1"]
    assert rows[0]["candidates"][0] == {"identity": "p1", "score": pytest.approx(1.0, abs=1e-5)}


def test_a_lower_threshold_refusal_names_the_override(tmp_path, capsys):
    data = _faces(tmp_path / "people", people=2, each=1)
    main(["enroll", str(tmp_path / "g"), "--model", "pixels", "--aligned", "--from-folder", str(data)])
    main(["gallery", "set-threshold", str(tmp_path / "g"), "0.9"])
    capsys.readouterr()
    assert main(["identify", str(tmp_path / "g"), str(data / "p0" / "0.png"), "--threshold", "0.5"]) == 2
    out = capsys.readouterr().out
    assert "--threshold-override any" in out and "set by hand" in out
