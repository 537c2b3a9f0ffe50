from faceid.evaluation.benchmarks.losses import run_loss_benchmark
from faceid.losses import available_losses


def test_loss_benchmark_reports_every_loss_against_softmax(capsys):
    rows = run_loss_benchmark(device="cpu", repeats=1, quick=True)
    small = {row["loss"] for row in rows if row["classes"] == 100}
    assert small == set(available_losses())
    assert all(row["ratio"] > 0 for row in rows)
    assert next(r for r in rows if r["loss"] == "softmax")["ratio"] == 1.0
    large = {row["loss"] for row in rows if row["classes"] == 1000}
    assert "triplet" not in large and "contrastive" not in large and "arcface" in large
    assert "x softmax" in capsys.readouterr().out
