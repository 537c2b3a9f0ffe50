import json

from faceid.cli import main
from faceid.embedding import TorchEmbedder, save_backbone_checkpoint


def test_enroll_calibrate_identify_verify_and_manage(small_synthetic, tmp_path, capsys, backend):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    gallery = str(tmp_path / "g")
    aligned = small_synthetic / "aligned"
    assert main(["enroll", gallery, "--model", str(tmp_path / "model.pt"), "--aligned", "--backend", backend,
                 "--from-folder", str(aligned)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["identities"] == 12 and summary["enrolled_samples"] == 48
    (tmp_path / "bad.png").write_text("nope")
    assert main(["enroll", gallery, "--identity", "extra", str(aligned / "id_00000" / "000.png"),
                 str(tmp_path / "bad.png")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and "not a readable image" in next(iter(summary["failures"].values()))
    assert summary["enrolled_samples"] == 1
    assert main(["gallery", "calibrate", gallery, "--data", str(aligned), "--target-far", "0.05"]) == 0
    calibration = json.loads(capsys.readouterr().out)
    assert calibration["source"] == "calibrate" and calibration["far"] <= 0.05
    assert main(["identify", gallery, str(aligned / "id_00004" / "002.png"), "-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["candidates"][0][0] == "id_00004" and rows[0]["threshold"] == calibration["threshold"]
    assert main(["verify", gallery, str(aligned / "id_00004" / "002.png"), "--identity", "id_00004"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] is True
    assert main(["gallery", "remove", gallery, "extra"]) == 0
    capsys.readouterr()
    assert main(["gallery", "stats", gallery]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["identities"] == 12 and stats["backend"] == backend
    assert main(["gallery", "check", gallery]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    assert main(["gallery", "export", gallery, str(tmp_path / "g.npz")]) == 0
    assert main(["identify", str(tmp_path / "missing"), str(aligned / "id_00004" / "002.png")]) == 1
    assert "is not a gallery" in capsys.readouterr().err
