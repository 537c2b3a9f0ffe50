"""`faceid export`: a checkpoint, or a model-zoo name whose cached model is one (`dlib_resnet_v1`,
`facenet_vggface2`...), to ONNX (plus float16 and int8 copies), each checked against PyTorch."""

import argparse
from pathlib import Path

SUMMARY = "export a trained backbone to ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a faceid backbone checkpoint (model.pt / best.pt of a run) or a model-zoo "
                        "name (dlib_resnet_v1...: see `faceid models list`)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--parity-faces", type=Path, default=None,
                        help="aligned faces for the parity check (default: generated faces)")
    parser.add_argument("--int8", choices=["static", "dynamic"], default=None, nargs="?", const="static",
                        help="also write an int8 model (static: calibrated QDQ, the default; dynamic: weights only)")
    parser.add_argument("--calibration", type=Path, default=None, help="aligned faces for static int8 calibration")
    parser.add_argument("--fp16", action="store_true", help="also write a float16 model (needs CUDA)")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="identity-folder tree: report each model's verification accuracy on it")


def run(args: argparse.Namespace) -> int:
    from faceid.export.onnx_export import check_parity, export_fp16, export_onnx, quantize_int8, sample_faces
    from faceid.torch_embedder import TorchEmbedder

    args.checkpoint = checkpoint_of(args.checkpoint)
    parity = export_onnx(args.checkpoint, args.out, args.parity_faces)
    print(f"wrote {args.out}: {parity}")
    models = {"float32": args.out}
    faces, source = sample_faces(args.parity_faces)
    if args.fp16:
        models["float16"] = export_fp16(args.checkpoint, args.out.with_suffix(".fp16.onnx"))
    if args.int8:
        models["int8"] = quantize_int8(args.out, args.out.with_suffix(".int8.onnx"), args.calibration, args.int8)
    reference = TorchEmbedder.from_checkpoint(args.checkpoint, device="cpu")
    for kind, path in models.items():
        if kind != "float32":
            print(f"wrote {path}: {check_parity(reference, path, faces, source)}")
    if args.eval_data is not None:
        _compare_accuracy(args.eval_data, reference, models, args.out.parent)
    return 0


def checkpoint_of(model: str) -> Path:
    """The checkpoint file `model` names: a path, or a zoo name resolved (pulled on first use) through faceid.zoo."""
    from faceid.zoo import is_model_name, resolve

    if not is_model_name(model) or Path(model).exists():
        return Path(model)
    path = resolve(model)
    if path.suffix != ".pt":
        raise ValueError(f"model {model} is an ONNX model already ({path}); `faceid export` exports faceid "
                         "checkpoints (use the cached file as it is)")
    return path


def _compare_accuracy(eval_data: Path, reference, models: dict[str, Path], out_dir: Path) -> None:
    """Print the verification accuracy of the PyTorch model and of every exported copy on `eval_data`."""
    from faceid.data.folder import list_identity_folder
    from faceid.data.protocols import build_pair_protocol
    from faceid.evaluation.runner import compare_embedders
    from faceid.export.embedder import OnnxEmbedder

    protocol = build_pair_protocol(list_identity_folder(eval_data))
    embedders = {"pytorch": reference, **{kind: OnnxEmbedder(path, device="cpu") for kind, path in models.items()}}
    for row in compare_embedders(protocol, embedders, out_dir, eval_data):
        print(f"{row['model']:>8}: 10-fold accuracy {row['accuracy']:.2f}% (change {row['change']:+.2f} points), "
              f"AUC {row['auc']:.4f}")
