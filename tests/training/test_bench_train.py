"""`faceid bench train --quick` end to end on generated faces, and its CUDA refusal on a CPU machine."""

import re

import pytest
import torch

from faceid.cli import main
from faceid.training.benchmarks.train import run_train_benchmark


def test_quick_train_benchmark_prints_every_row(tmp_path, capsys):
    result = run_train_benchmark("cpu", quick=True, data=tmp_path / "absent", work=tmp_path, progress=False)
    out = capsys.readouterr().out
    cases = [(r["case"], r["workers"]) for r in result["rows"]]
    assert cases == [("bare", "-"), ("trainer step", "-"), ("pipeline (files)", 0), ("pipeline (files)", 1),
                     ("pipeline (cache)", 0), ("pipeline (cache)", 1), ("end to end (files)", 0),
                     ("end to end (files)", 1), ("end to end (cache)", 0), ("end to end (cache)", 1)]
    assert result["rows"][0]["ratio"] == 1.0 and all(r["img_s"] > 0 for r in result["rows"])
    assert re.search(r"\| small_cnn \| compiled \| [01] \| - \| - \| skipped on CPU", out)
    assert {(r["classes"], r["rate"]) for r in result["head"]} == {(1_000, 1.0), (1_000, 0.1), (10_000, 1.0),
                                                                    (10_000, 0.1)}
    assert "small_cnn: trainer step" in out and "target >= 0.95" in out and "end to end >= 0.9x bare" in out
    assert "rate 0.1 at 10,000 classes:" in out and "x bare" in out and "speed-up vs rate 1" in out
    assert "generated faces instead" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_is_refused_clearly_without_a_gpu(capsys):
    assert main(["bench", "train", "--device", "cuda", "--quick"]) == 2
    error = capsys.readouterr().err
    assert "faceid bench: error: device 'cuda'" in error and "torch.cuda.is_available() is False" in error
