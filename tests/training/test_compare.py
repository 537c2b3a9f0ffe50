import json

from faceid.cli import main
from faceid.training.compare import parse_loss


def test_parse_loss_specs():
    assert parse_loss("arcface") == ("arcface", {})
    assert parse_loss("cosface:{s: 30, m: 0.2}") == ("cosface", {"s": 30, "m": 0.2})


def test_compare_losses_table(small_synthetic, tmp_path, capsys):
    code = main(["compare-losses", "--set", f"data.root={small_synthetic / 'aligned'}", "--set", "device=cpu",
                 "--set", "model.input_size=32", "--set", "model.embedding_dim=16", "--set", "training.epochs=1",
                 "--set", "training.batch_size=16", "--set", "data.validation_fraction=0.25",
                 "--set", "evaluation.folds=2", "--loss", "softmax", "--loss", "triplet:{margin: 0.3}",
                 "--out", str(tmp_path)])
    assert code == 0
    rows = json.loads((tmp_path / "comparison.json").read_text())
    assert [r["loss"] for r in rows] == ["softmax", "triplet"] and rows[1]["params"] == {"margin": 0.3}
    assert "| softmax | defaults |" in capsys.readouterr().out
