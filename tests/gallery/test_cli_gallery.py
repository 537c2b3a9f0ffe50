import json

from faceid.checkpoint import save_backbone_checkpoint
from faceid.cli import main
from faceid.torch_embedder import TorchEmbedder


def test_enroll_calibrate_identify_verify_and_manage(small_synthetic, tmp_path, capsys, backend):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    gallery = str(tmp_path / "g")
    aligned = small_synthetic / "aligned"
    assert main(["enroll", "--json", gallery, "--model", str(tmp_path / "model.pt"), "--aligned", "--backend", backend,
                 "--from-folder", str(aligned)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["identities"] == 12 and summary["enrolled_samples"] == 48
    (tmp_path / "bad.png").write_text("nope")
    assert main(["enroll", "--json", gallery, "--identity", "extra", str(aligned / "id_00000" / "000.png"),
                 str(tmp_path / "bad.png")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 1 and "not a readable image" in next(iter(summary["failures"].values()))
    assert summary["enrolled_samples"] == 1
    assert main(["gallery", "calibrate", "--json", gallery, "--data", str(aligned), "--target-far", "0.05"]) == 0
    calibration = json.loads(capsys.readouterr().out)
    assert calibration["source"] == "calibrate" and calibration["far"] <= 0.05
    assert main(["identify", "--json", gallery, str(aligned / "id_00004" / "002.png"), "-k", "2"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["candidates"][0]["identity"] == "id_00004" and rows[0]["threshold"] == calibration["threshold"]
    assert main(["verify", "--json", gallery, str(aligned / "id_00004" / "002.png"), "--identity", "id_00004"]) == 0
    assert json.loads(capsys.readouterr().out)["accepted"] is True
    assert main(["gallery", "remove", "--json", gallery, "extra"]) == 0
    capsys.readouterr()
    assert main(["gallery", "stats", "--json", gallery]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["identities"] == 12 and stats["backend"] == backend
    assert main(["gallery", "check", "--json", gallery]) == 0
    assert json.loads(capsys.readouterr().out)["consistent"] is True
    assert main(["gallery", "export", "--json", gallery, str(tmp_path / "g.npz")]) == 0
    assert main(["identify", "--json", str(tmp_path / "missing"), str(aligned / "id_00004" / "002.png")]) == 2
    assert "is not a gallery" in capsys.readouterr().err


def _count_opens_and_closes(monkeypatch) -> dict:
    from faceid.gallery.gallery import Gallery

    counts = {"opened": 0, "closed": 0}
    opening, closing = Gallery.__init__, Gallery.close

    def opened(self, *args, **kwargs):
        opening(self, *args, **kwargs)
        counts["opened"] += 1

    def closed(self):
        counts["closed"] += 1
        closing(self)

    monkeypatch.setattr(Gallery, "__init__", opened)
    monkeypatch.setattr(Gallery, "close", closed)
    return counts


def test_commands_close_the_gallery_they_open_also_on_error(small_synthetic, tmp_path, capsys, monkeypatch):
    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    gallery, probe = str(tmp_path / "g"), str(small_synthetic / "aligned" / "id_00004" / "002.png")
    assert main(["enroll", gallery, "--model", str(tmp_path / "model.pt"), "--aligned", "--identity", "a", probe]) == 0
    counts = _count_opens_and_closes(monkeypatch)
    calls = [["identify", gallery, probe], ["verify", gallery, probe, "--identity", "a"],
             ["verify", gallery, probe, "--identity", "nobody"],  # fails inside the open gallery
             ["gallery", "rename", gallery, "a", "unknown"], ["gallery", "stats", gallery],
             ["gallery", "list", gallery], ["gallery", "check", gallery], ["enroll", gallery, "--identity", "b", probe]]
    for call in calls:
        main(call)
        assert counts["opened"] == counts["closed"], f"`faceid {' '.join(call[:2])}` left its gallery open"
    assert counts["opened"] == len(calls)
    capsys.readouterr()


def test_fifty_enrolments_leave_a_snapshot_so_an_open_replays_fewer_than_fifty_changes(small_synthetic, tmp_path,
                                                                                      capsys):
    import threading

    from faceid.gallery.gallery import Gallery

    embedder = TorchEmbedder.untrained("small_cnn", 16, 64, device="cpu")
    save_backbone_checkpoint(tmp_path / "model.pt", embedder.model, "small_cnn", 16, 64)
    images = sorted((small_synthetic / "aligned").rglob("*.png"))
    gallery = str(tmp_path / "g")
    for number in range(50):
        options = ["--model", str(tmp_path / "model.pt"), "--aligned"] if number == 0 else []
        image = str(images[number % len(images)])
        assert main(["enroll", "--json", gallery, *options, "--identity", f"person{number}", image]) == 0
        snapshotting = [thread for thread in threading.enumerate() if thread.name == "gallery-snapshot"]
        assert not snapshotting  # the command joined its background snapshot before returning
    capsys.readouterr()
    assert list((tmp_path / "g").glob("index.*.faiss"))
    with Gallery(tmp_path / "g") as reopened:
        state = reopened.stats()["index"]
        assert state["rebuilt_reason"] is None and state["snapshot_generation"] > 0
        assert state["replayed_changes"] < 50 and len(reopened.index) == 50
