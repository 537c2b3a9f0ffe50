"""`faceid bench embed`: embedding throughput of PyTorch eager, a bare onnxruntime session and the
`OnnxEmbedder` (float32 and int8), at batch 1 and 32, for iresnet50 and MobileFaceNet at 112x112;
every figure is also given as a ratio to PyTorch eager measured in the same run. Then end-to-end
images/s (decode + detect + align + embed) on real photos. Weights are random: speed only.
"""

import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from faceid.backbones import build_backbone
from faceid.checkpoint import save_backbone_checkpoint
from faceid.export.embedder import OnnxEmbedder
from faceid.export.onnx_export import export_onnx, quantize_int8


def _best(function, repeats: int, window: float = 0.5) -> float:
    """Seconds per call: the best of `repeats` windows, each the mean over calls filling `window` seconds."""
    function()
    times = []
    for _ in range(repeats):
        calls, started = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - started < window:
            function()
            calls += 1
        times.append((time.perf_counter() - started) / calls)
    return min(times)


def _bare_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def random_onnx(name: str, scratch: Path) -> tuple[torch.nn.Module, Path]:
    """A seeded random-weight backbone (512-d, 112x112) and its float32 ONNX export in `scratch`."""
    torch.manual_seed(0)
    model = build_backbone(name, 512, 112).eval()
    save_backbone_checkpoint(scratch / f"{name}.pt", model, name, 512, 112)
    export_onnx(scratch / f"{name}.pt", scratch / f"{name}.onnx")
    return model, scratch / f"{name}.onnx"


def benchmark_backbone(name: str, scratch: Path, repeats: int, batches=(1, 32)) -> list[dict]:
    model, fp32 = random_onnx(name, scratch)
    int8 = quantize_int8(fp32, scratch / f"{name}.int8.onnx")
    rng = np.random.default_rng(0)
    rows = []
    for batch in batches:
        crops = rng.integers(0, 255, (batch, 112, 112, 3), dtype=np.uint8)
        tensor = torch.from_numpy(OnnxEmbedder(fp32, device="cpu").model_input.apply(crops))
        with torch.inference_mode():
            eager = _best(partial(model, tensor), repeats)
        row = {"backbone": name, "batch": batch, "pytorch_eager": batch / eager}
        for kind, path in (("fp32", fp32), ("int8", int8)):
            session, embedder = _bare_session(path), OnnxEmbedder(path, device="cpu", batch_size=batch)
            feed = {session.get_inputs()[0].name: tensor.numpy()}
            row[f"ort_{kind}"] = batch / _best(partial(session.run, None, feed), repeats)
            row[f"embedder_{kind}"] = batch / _best(partial(embedder.embed, crops), repeats)
        rows.append(row)
    return rows


END_TO_END_IMAGES = 60


def end_to_end(photos: Path, model_path: Path, limit: int = END_TO_END_IMAGES) -> float:
    from faceid.data.images import read_rgb
    from faceid.preprocessing import FacePreprocessor

    paths = sorted(photos.glob("*.jpg"))[:limit]
    preprocessor = FacePreprocessor(select="largest", device="cpu")
    embedder = OnnxEmbedder(model_path, device="cpu")
    started = time.perf_counter()
    crops = []
    for path in paths:
        faces = preprocessor(read_rgb(path))
        crops.extend(face.crop for face in faces[:1])
    embedder.embed(crops)
    return len(paths) / (time.perf_counter() - started)


def run_embed_benchmark(photos: Path | None, repeats: int = 3, backbones=("mobilefacenet", "iresnet50")) -> list[dict]:
    """Print the table, then the end-to-end rate on the .jpg files of `photos` (skipped, saying why, when
    `photos` is None or not a folder); return the table's rows."""
    print(f"faceid bench embed  CPU threads={torch.get_num_threads()}  images/s (x PyTorch eager), best of {repeats}")
    columns = ["pytorch_eager", "ort_fp32", "embedder_fp32", "ort_int8", "embedder_int8"]
    print(f"{'backbone':<15}{'batch':>6}" + "".join(f"{c:>22}" for c in columns)
          + f"{'embedder/ort fp32':>19}{'int8/fp32':>11}")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for name in backbones:
            for row in benchmark_backbone(name, Path(scratch), repeats):
                rows.append(row)
                cells = "".join(f"{row[c]:>12.1f} ({row[c] / row['pytorch_eager']:4.2f}x)" for c in columns)
                print(f"{name:<15}{row['batch']:>6}{cells}{row['embedder_fp32'] / row['ort_fp32']:>19.2f}"
                      f"{row['ort_int8'] / row['ort_fp32']:>11.2f}", flush=True)
        if photos is None or not photos.is_dir():
            reason = "no photos given (--data, or FACEID_DATA)" if photos is None else f"{photos} is not a folder"
            print(f"end to end (decode + detect + align + embed) skipped: {reason}")
        else:
            rate = end_to_end(photos, Path(scratch) / f"{backbones[0]}.onnx")
            print(f"end to end (decode + detect + align + embed, {backbones[0]} fp32) on {photos}: {rate:.1f} images/s")
    return rows
