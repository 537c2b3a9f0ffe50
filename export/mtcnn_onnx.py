"""MTCNN's three networks exported to ONNX from the weights inside facenet-pytorch's wheel (no download).

`export_mtcnn(folder)` writes pnet.onnx (dynamic batch, height and width), rnet.onnx and onet.onnx (dynamic
batch), each checked against the torch network on random input, and returns their sha256 digests.
`faceid.mtcnn_runtime.OnnxMTCNN` runs them without torch.
"""

import contextlib
import hashlib
import io
from pathlib import Path

import numpy as np
import onnx
import torch

from faceid.export.onnx_export import OPSET
from faceid.mtcnn_runtime import MTCNN_FILES

EXPORT_TOLERANCE = 1e-4  # max |ONNX - torch| on random input, for every output


def _stages():
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(device="cpu")
    batch = torch.export.Dim("batch")
    side = {"height": torch.export.Dim("height", min=12), "width": torch.export.Dim("width", min=12)}
    return {"pnet": (mtcnn.pnet, torch.rand(2, 3, 40, 52) * 2 - 1, {0: batch, 2: side["height"], 3: side["width"]},
                     ["regression", "probability"]),
            "rnet": (mtcnn.rnet, torch.rand(3, 3, 24, 24) * 2 - 1, {0: batch}, ["regression", "probability"]),
            "onet": (mtcnn.onet, torch.rand(3, 3, 48, 48) * 2 - 1, {0: batch},
                     ["regression", "landmarks", "probability"])}


def _checked(net: torch.nn.Module, proto, example: torch.Tensor, stage: str) -> None:
    import onnxruntime

    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    probe = torch.rand(example.shape[0] + 1, 3, *(s + 5 if stage == "pnet" else s for s in example.shape[2:])) * 2 - 1
    with torch.no_grad():
        expected = [output.numpy() for output in net(probe)]
    for name, got, want in zip([o.name for o in session.get_outputs()], session.run(None, {"input": probe.numpy()}),
                               expected, strict=True):
        difference = float(np.abs(got - want).max())
        if difference > EXPORT_TOLERANCE:
            raise RuntimeError(f"{stage} export: output {name} differs from torch by {difference:.2e}")


def export_mtcnn(folder: str | Path) -> dict[str, str]:
    """Write the three ONNX files into `folder`; {file name: sha256}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digests = {}
    torch.manual_seed(0)
    for stage, (net, example, dynamic, outputs) in _stages().items():
        net.eval()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            program = torch.onnx.export(net, (example,), None, input_names=["input"], output_names=outputs,
                                        opset_version=OPSET, dynamo=True, external_data=False, optimize=True,
                                        dynamic_shapes=(dynamic,), verbose=False)
        proto = program.model_proto
        onnx.checker.check_model(proto, full_check=True)
        _checked(net, proto, example, stage)
        path = folder / MTCNN_FILES[stage]
        onnx.save(proto, path)
        digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests
