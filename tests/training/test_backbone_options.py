"""A run with backbone options (`model.options`) is usable downstream: its model.pt loads with those
options, exports to ONNX, evaluates and takes part in compare-losses."""

import json

import numpy as np

from faceid.cli import main
from faceid.data.images import read_rgb
from faceid.torch_embedder import TorchEmbedder
from faceid.training.trainer import Trainer
from tests.training.test_trainer import TINY, _config

OPTIONS = "model.options={width: 8, norm: group}"
QUICK = [OPTIONS, "training.epochs=1", "training.validate_every_epochs=null", "training.augmentation=none"]


def test_a_run_with_backbone_options_loads_exports_evaluates_and_compares(small_synthetic, tmp_path):
    aligned = small_synthetic / "aligned"
    summary = Trainer(_config(small_synthetic, tmp_path / "run", *QUICK), progress=False).train()

    embedder = TorchEmbedder.from_checkpoint(summary["model"], device="cpu")
    assert not any("running_mean" in key for key in embedder.model.state_dict())  # group norm, as trained
    faces = [read_rgb(path) for path in sorted(aligned.rglob("*.png"))[:4]]
    embeddings = embedder.embed(faces)
    assert embeddings.shape == (4, 16) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)

    from faceid.export.onnx_export import export_onnx

    parity = export_onnx(summary["model"], tmp_path / "model.onnx", parity_faces=aligned)
    assert parity.min_cosine > 0.9999

    assert main(["evaluate", "--model", summary["model"], "--data", str(aligned), "--out", str(tmp_path / "eval"),
                 "--folds", "2", "--pairs-per-fold", "10", "--device", "cpu",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert 0 <= report["verification"]["accuracy_10fold_mean"] <= 1

    overrides = [f"data.root={aligned}", *TINY, *QUICK]
    arguments = ["compare-losses", "--loss", "cosface:{s: 16.0, m: 0.1}", "--out", str(tmp_path / "compare")]
    assert main([*arguments, *(item for override in overrides for item in ("--set", override))]) == 0
    rows = json.loads((tmp_path / "compare" / "comparison.json").read_text())
    assert [row["loss"] for row in rows] == ["cosface"] and rows[0]["steps"] >= 1
