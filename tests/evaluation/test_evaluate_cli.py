import json

import numpy as np
import pytest

from faceid.checkpoint import save_backbone_checkpoint
from faceid.cli import main
from faceid.data.folder import list_identity_folder
from faceid.data.protocols import build_pair_protocol
from faceid.embedder import PixelEmbedder
from faceid.evaluation.embeddings import CENTRED, embed_images
from faceid.evaluation.runner import compare_embedders
from faceid.export.embedder import load_embedder
from faceid.torch_embedder import TorchEmbedder


def test_verification_report_files(small_synthetic, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["evaluate", "--model", "untrained:small_cnn:32", "--data", str(small_synthetic / "aligned"),
                 "--out", str(out), "--folds", "4", "--pairs-per-fold", "12", "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert 0 <= report["verification"]["accuracy_10fold_mean"] <= 1
    assert set(report["verification"]["tar_at_far"]) == {"1e-1", "1e-2", "1e-3", "1e-4", "1e-5", "1e-6"}
    for name in ("report.md", "roc.png", "score_histogram.png"):
        assert (out / name).stat().st_size > 0
    assert "10-fold accuracy" in capsys.readouterr().out


def test_identification_report_and_quality(small_synthetic, tmp_path):
    out = tmp_path / "ident"
    assert main(["evaluate", "--model", "pixels", "--data", str(small_synthetic / "aligned"), "--protocol",
                 "identification", "--out", str(out), "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["identification"]["num_non_mated_probes"] > 0
    assert "silhouette" in report["quality"] and (out / "cmc.png").is_file()


def test_cache_makes_a_rerun_skip_embedding(small_synthetic, tmp_path):
    paths = [i.path for i in list_identity_folder(small_synthetic / "aligned")][:10]
    embedder = load_embedder("untrained:small_cnn:16", device="cpu")
    first, _, _ = embed_images(paths, embedder, cache_dir=tmp_path, progress=False)
    calls = []
    original = embedder.embed
    embedder.embed = lambda crops: calls.append(len(crops)) or original(crops)
    second, _, _ = embed_images(paths, embedder, cache_dir=tmp_path, progress=False)
    assert calls == []
    assert all(np.array_equal(first[p], second[p]) for p in paths)


def test_corrupt_image_is_reported_and_skipped(small_synthetic, tmp_path):
    paths = [i.path for i in list_identity_folder(small_synthetic / "aligned")][:4]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    embeddings, failures, _ = embed_images(paths + [broken, tmp_path / "missing.png"], load_embedder("pixels"),
                                        progress=False)
    assert len(embeddings) == 4 and set(failures) == {broken, tmp_path / "missing.png"}
    assert "not a readable image" in failures[broken]


def test_external_embeddings_and_checkpoint_models(small_synthetic, tmp_path):
    images = list_identity_folder(small_synthetic / "aligned")
    embedder = TorchEmbedder.untrained("small_cnn", 16, device="cpu")
    vectors, _, _ = embed_images([i.path for i in images], embedder, progress=False)
    relative = [str(i.path.relative_to(small_synthetic / "aligned")) for i in images]
    np.savez(tmp_path / "theirs.npz", paths=np.array(relative), embeddings=np.stack([vectors[i.path] for i in images]))
    args = ["--data", str(small_synthetic / "aligned"), "--folds", "4", "--pairs-per-fold", "12",
            "--cache-dir", str(tmp_path / "cache")]
    assert main(["evaluate", "--embeddings", str(tmp_path / "theirs.npz"), "--out", str(tmp_path / "a"), *args]) == 0
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16)
    assert main(["evaluate", "--model", str(tmp_path / "model.pt"), "--out", str(tmp_path / "b"), *args]) == 0
    a = json.loads((tmp_path / "a/report.json").read_text())["verification"]
    b = json.loads((tmp_path / "b/report.json").read_text())["verification"]
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-6)


def test_compare_embedders_reports_each_against_the_first(small_synthetic, tmp_path):
    data = small_synthetic / "aligned"
    protocol = build_pair_protocol(list_identity_folder(data), 4, 12)
    embedders = {"pixels": PixelEmbedder(32), "untrained": TorchEmbedder.untrained("small_cnn", 16, 32, device="cpu")}
    rows = compare_embedders(protocol, embedders, tmp_path, data)
    assert [row["model"] for row in rows] == ["pixels", "untrained"]
    assert rows[0]["change"] == 0.0
    assert rows[1]["change"] == pytest.approx(rows[1]["accuracy"] - rows[0]["accuracy"])
    assert all(0 <= row["accuracy"] <= 100 and 0 <= row["auc"] <= 1 for row in rows)
    assert (tmp_path / "evaluation-pixels" / "report.json").is_file()
    assert (tmp_path / "evaluation-untrained" / "report.json").is_file()


def test_bad_model_and_embeddings_give_clear_errors(small_synthetic, tmp_path, capsys):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["evaluate", "--model", str(tmp_path / "junk.pt"), "--data", str(small_synthetic / "aligned"),
                 "--out", str(tmp_path / "x")]) == 2
    assert "not a readable PyTorch checkpoint" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", vectors=np.zeros((2, 3)))
    assert main(["evaluate", "--embeddings", str(tmp_path / "bad.npz"), "--data", str(small_synthetic / "aligned"),
                 "--folds", "4", "--out", str(tmp_path / "y")]) == 2
    assert "must hold arrays 'paths' and 'embeddings'" in capsys.readouterr().err


def test_photos_are_detected_and_aligned_with_detect(shared_data, tmp_path):
    from PIL import Image

    from faceid.preprocessing import FacePreprocessor

    photos = [shared_data / "photos" / "kate_siegel.jpg", shared_data / "photos" / "multiface.jpg"]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    embedder, preprocessor = load_embedder("untrained:small_cnn:16", device="cpu"), FacePreprocessor(device="cpu")
    embeddings, failures, _ = embed_images(photos + [blank], embedder, progress=False, preprocessor=preprocessor,
                                           no_face="skip")
    assert set(embeddings) == set(photos) and failures[blank].endswith("no face found")
    embeddings, failures, remarks = embed_images(photos + [blank], embedder, progress=False,
                                                 preprocessor=preprocessor)  # the default: its centre is embedded
    assert set(embeddings) == set(photos + [blank]) and not failures and remarks == {blank: CENTRED}
