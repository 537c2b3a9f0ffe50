"""The `faceid` command. Thin: each subcommand imports its stage lazily, inside its handler."""

import argparse
import json
import sys
from pathlib import Path

NOT_BUILT = {
    "enroll": "the gallery (issue #8)",
    "verify": "the gallery (issue #8)",
    "identify": "the gallery (issue #8)",
    "gallery": "the gallery (issue #8)",
    "serve": "the gallery's HTTP service (issue #8)",
}

SUMMARIES = {
    "synth": "generate a synthetic identity-labelled face dataset (raw + aligned)",
    "align": "detect and align faces of an identity-folder tree",
    "train": "train a backbone with a face loss",
    "export": "export a trained backbone to ONNX",
    "embed": "embed images with a model",
    "enroll": "enroll identities into a gallery",
    "verify": "1:1 verification of an image against an enrolled identity",
    "identify": "1:N open-set identification against a gallery",
    "gallery": "list, inspect, calibrate or edit a gallery",
    "serve": "serve a gallery over HTTP",
    "evaluate": "evaluate a model on a verification or identification protocol",
    "compare-losses": "train and compare several losses on one dataset",
    "bench": "benchmarks (losses, ...) printing ratios to a baseline from the same run",
    "demo": "run the end-to-end demo on generated data",
}


def _add_synth(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identities", type=int, default=40, help="number of identities (default 40)")
    parser.add_argument("--images-per-identity", type=int, default=10, help="images per identity (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--canvas-size", type=int, default=224, help="side of the raw images")
    parser.add_argument("--aligned-size", type=int, default=112, help="side of the aligned crops")
    parser.add_argument("--out", required=True, type=Path, help="output directory (raw/ and aligned/ go inside)")


def _run_synth(args) -> int:
    from faceid.data.synthetic import generate_dataset

    summary = generate_dataset(args.out, args.identities, args.images_per_identity, args.seed,
                               args.canvas_size, args.aligned_size)
    print(json.dumps(summary, indent=2))
    return 0


def default_cache_dir() -> Path:
    import os

    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "faceid" / "embeddings"


def _add_align(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="identity-folder tree, flat folder, or a file listing image paths")
    parser.add_argument("destination", type=Path, help="where the aligned tree and manifest.jsonl go")
    parser.add_argument("--workers", type=int, default=1, help="parallel worker processes (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="redo images already in the manifest")
    parser.add_argument("--select", choices=["all", "largest", "best", "center"], default="largest",
                        help="which face to keep when an image holds several (all: one crop each)")
    parser.add_argument("--size", type=int, default=112, help="side of the aligned crops")
    parser.add_argument("--min-face-size", type=int, default=20)
    parser.add_argument("--min-score", type=float, default=0.9)
    parser.add_argument("--max-side", type=int, default=1280, help="larger images are downscaled for detection")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])


def _run_align(args) -> int:
    from faceid.align_tree import align_tree

    summary = align_tree(args.source, args.destination, workers=args.workers, overwrite=args.overwrite,
                         select=args.select, size=args.size, device=args.device, min_face_size=args.min_face_size,
                         min_score=args.min_score, max_side=args.max_side)
    print(json.dumps(summary, indent=2))
    nothing_done = summary["processed"] > 0 and summary["ok"] == 0
    return 1 if nothing_done else 0


def _add_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="YAML configuration (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration key, e.g. --set training.lr=0.05")
    parser.add_argument("--resume", nargs="?", const="auto", default=None,
                        help="continue a run: a checkpoint path, or nothing for RUN_DIR/checkpoints/last.pt")


def _run_train(args) -> int:
    from faceid.config import load_config
    from training.trainer import Trainer

    summary = Trainer(load_config(args.config, args.overrides), resume=args.resume).train()
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "last_validation"}, indent=2, default=float))
    return 0


def _add_compare_losses(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="the base training configuration")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--loss", dest="losses", action="append", required=True, metavar="NAME[:{params}]",
                        help="a loss to train, optionally with YAML hyperparameters, e.g. 'cosface:{s: 30, m: 0.2}'")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="identity-folder tree of evaluation identities (default: the held-out identities of data.root)")
    parser.add_argument("--out", type=Path, required=True, help="one run per loss, plus comparison.md/json")


def _run_compare_losses(args) -> int:
    from faceid.config import load_config
    from training.compare import compare_losses

    rows = compare_losses(load_config(args.config, args.overrides), args.losses, args.eval_data, args.out)
    print((args.out / "comparison.md").read_text())
    return 0 if rows else 1


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="a faceid backbone checkpoint (model.pt / best.pt of a run)")
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--parity-faces", type=Path, default=None,
                        help="aligned faces for the parity check (default: generated faces)")
    parser.add_argument("--int8", choices=["static", "dynamic"], default=None, nargs="?", const="static",
                        help="also write an int8 model (static: calibrated QDQ, the default; dynamic: weights only)")
    parser.add_argument("--calibration", type=Path, default=None, help="aligned faces for static int8 calibration")
    parser.add_argument("--fp16", action="store_true", help="also write a float16 model (needs CUDA)")
    parser.add_argument("--eval-data", type=Path, default=None,
                        help="identity-folder tree: report each model's verification accuracy on it")


def _run_export(args) -> int:
    from export.embedder import OnnxEmbedder
    from export.onnx_export import check_parity, export_fp16, export_onnx, quantize_int8, sample_faces
    from faceid.embedding import TorchEmbedder

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
        from evaluation.runner import evaluate_pairs
        from faceid.data.folder import list_identity_folder
        from faceid.data.protocols import build_pair_protocol

        protocol = build_pair_protocol(list_identity_folder(args.eval_data))
        baseline = None
        for kind, path in [("pytorch", args.checkpoint), *models.items()]:
            embedder = reference if kind == "pytorch" else OnnxEmbedder(path, device="cpu")
            report = evaluate_pairs(protocol, args.out.parent / f"evaluation-{kind}", kind, args.eval_data,
                                    embedder=embedder, progress=False)["verification"]
            accuracy = 100 * report["accuracy_10fold_mean"]
            baseline = accuracy if baseline is None else baseline
            print(f"{kind:>8}: 10-fold accuracy {accuracy:.2f}% (change {accuracy - baseline:+.2f} points), "
                  f"AUC {report['auc']:.4f}")
    return 0


def _add_embed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--model", required=True, help="an ONNX model or a faceid checkpoint")
    parser.add_argument("--out", type=Path, required=True,
                        help="embeddings.npy (rows in the order of <out>.paths.txt) or .npz (arrays paths, embeddings)")
    parser.add_argument("--aligned", action="store_true", help="inputs are aligned crops already: skip detection")
    parser.add_argument("--select", choices=["largest", "best", "center"], default="largest")
    parser.add_argument("--preprocessing", type=Path, default=None, help="YAML for a third-party ONNX model")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=32)


def _run_embed(args) -> int:
    from export.embed_files import embed_files

    summary = embed_files(args.images, args.model, args.out, aligned=args.aligned, select=args.select,
                          preprocessing=args.preprocessing, device=args.device, batch_size=args.batch_size)
    print(json.dumps(summary, indent=2))
    return 0 if summary["embedded"] else 1


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="an ONNX model, a faceid checkpoint (.pt); baselines: "
                        "untrained:<backbone>[:<dim>], pixels")
    source.add_argument("--embeddings", type=Path, help="an .npz with arrays 'paths' and 'embeddings' from any system")
    parser.add_argument("--data", type=Path, required=True, help="root of the aligned images (identity folders)")
    parser.add_argument("--pairs", type=Path, help="LFW pairs.txt or a path1,path2,label CSV (paths relative to --data)")
    parser.add_argument("--protocol", choices=["verification", "identification"], default="verification",
                        help="protocol built from the --data tree when no --pairs file is given")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--pairs-per-fold", type=int, default=300)
    parser.add_argument("--unknown-fraction", type=float, default=0.3, help="share of identities left out of the gallery")
    parser.add_argument("--gallery-per-identity", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-missing", action="store_true", help="skip pairs whose images are missing")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache-dir", type=Path, default=None, help="embedding cache (default ~/.cache/faceid/embeddings)")
    parser.add_argument("--preprocessing", type=Path, default=None,
                        help="YAML describing a third-party ONNX model's input (input_size, channel_order, mean, std)")


def _run_evaluate(args) -> int:
    from evaluation.runner import evaluate_identification, evaluate_pairs
    from faceid.data import protocols
    from faceid.data.folder import list_identity_folder
    from export.embedder import load_embedder

    embedder = load_embedder(args.model, args.device, args.batch_size, preprocessing=args.preprocessing) if args.model else None
    model_name = args.model or str(args.embeddings)
    common = dict(out=args.out, model_name=model_name, data=args.data, embedder=embedder,
                  embeddings_file=args.embeddings, cache_dir=args.cache_dir or default_cache_dir())
    if args.pairs is not None:
        reader = protocols.read_csv_pairs if args.pairs.suffix.lower() == ".csv" else protocols.read_lfw_pairs
        report = evaluate_pairs(reader(args.pairs, args.data, skip_missing=args.skip_missing), seed=args.seed, **common)
    elif args.protocol == "verification":
        protocol = protocols.build_pair_protocol(list_identity_folder(args.data), args.folds, args.pairs_per_fold,
                                                 args.seed)
        report = evaluate_pairs(protocol, seed=args.seed, **common)
    else:
        protocol = protocols.build_identification_split(list_identity_folder(args.data), args.unknown_fraction,
                                                        args.gallery_per_identity, args.seed)
        report = evaluate_identification(protocol, **common)
    print((args.out / "report.md").read_text())
    if report["images_failed"]:
        print(f"{report['images_failed']} image(s) could not be used; see failures in {args.out / 'report.json'}")
    print(f"report written to {args.out}")
    return 0


def _add_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=["losses", "detect", "embed"], help="what to benchmark")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per case")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/caltech_faces"),
                        help="real photos for `bench detect` and `bench embed` (default ../shared/data/caltech_faces)")
    parser.add_argument("--limit", type=int, default=200, help="at most this many images for `bench detect`")


def _run_bench(args) -> int:
    if args.target == "embed":
        from export.benchmark import run_embed_benchmark

        run_embed_benchmark(args.data, repeats=args.repeats)
        return 0
    if args.target == "detect":
        from evaluation.benchmarks.detection import run_detection_benchmark

        run_detection_benchmark(args.data, limit=args.limit)
        return 0
    from evaluation.benchmarks.losses import run_loss_benchmark

    run_loss_benchmark(device=args.device, repeats=args.repeats, quick=args.quick)
    return 0


DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-synthetic.yaml"


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-output"), help="where the demo writes (default demo-output/)")
    parser.add_argument("--config", type=Path, default=DEMO_CONFIG, help="YAML configuration (default configs/demo-synthetic.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a configuration key, e.g. --set training.epochs=3")


def _run_demo(args) -> int:
    from evaluation.runner import evaluate_pairs
    from faceid.config import load_config
    from faceid.data.dataset import split_identities
    from faceid.data.folder import list_identity_folder
    from faceid.data.protocols import build_pair_protocol
    from faceid.data.synthetic import generate_dataset
    from faceid.embedding import TorchEmbedder
    from training.trainer import Trainer

    overrides = [f"data.root={args.out / 'synthetic' / 'aligned'}", f"training.run_dir={args.out / 'run'}", *args.overrides]
    config = load_config(args.config, overrides)
    synth = config.synth
    print(f"[1/3] generating {synth.identities} synthetic identities x {synth.images_per_identity} images in {args.out}")
    summary = generate_dataset(args.out / "synthetic", synth.identities, synth.images_per_identity, synth.seed,
                               synth.canvas_size, synth.aligned_size)
    print(f"      raw faces + landmarks: {summary['raw']}; aligned crops: {summary['aligned']}")
    print(f"[2/3] training {config.model.backbone} with {config.loss.name} on {config.device} "
          f"({config.training.epochs} epochs), run directory {config.training.run_dir}")
    trained = Trainer(config).train()
    print(f"      {trained['steps']} steps in {trained['seconds']:.0f} s ({trained['images_per_second']:.0f} images/s)")
    print("[3/3] evaluating on held-out identities (never seen in training)")
    _, held_out = split_identities(list_identity_folder(config.data.root), config.data.validation_fraction, config.seed)
    protocol = build_pair_protocol(held_out, config.evaluation.folds, config.evaluation.pairs_per_fold, config.seed)
    baseline = TorchEmbedder.untrained(config.model.backbone, config.model.embedding_dim, config.model.input_size,
                                       device=config.device)
    untrained = evaluate_pairs(protocol, args.out / "report-untrained", f"untrained {config.model.backbone}",
                               config.data.root, embedder=baseline, progress=False)
    report = evaluate_pairs(protocol, args.out / "report", trained["model"], config.data.root,
                            embedder=TorchEmbedder.from_checkpoint(trained["model"], config.device), progress=False)
    print((args.out / "report" / "report.md").read_text())
    before, after = untrained["verification"], report["verification"]
    print(f"held-out 10-fold accuracy: untrained {100 * before['accuracy_10fold_mean']:.1f}% -> "
          f"trained {100 * after['accuracy_10fold_mean']:.1f}% ± {100 * after['accuracy_10fold_std']:.1f}%")
    print(f"report: {args.out / 'report' / 'report.md'} (plots beside it); model: {trained['model']}")
    return 0


HANDLERS = {"synth": (_add_synth, _run_synth), "align": (_add_align, _run_align), "train": (_add_train, _run_train),
            "compare-losses": (_add_compare_losses, _run_compare_losses), "export": (_add_export, _run_export),
            "embed": (_add_embed, _run_embed), "evaluate": (_add_evaluate, _run_evaluate), "bench": (_add_bench, _run_bench), "demo": (_add_demo, _run_demo)}


def build_parser() -> argparse.ArgumentParser:
    from faceid import __version__

    parser = argparse.ArgumentParser(prog="faceid", description="Face identification: detect, align, train, "
                                     "export, enroll, verify and identify.")
    parser.add_argument("--version", action="version", version=f"faceid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in SUMMARIES.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        if name in HANDLERS:
            HANDLERS[name][0](sub)
        else:
            sub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in NOT_BUILT:
        print(f"faceid {args.command}: not built yet; it arrives with {NOT_BUILT[args.command]}", file=sys.stderr)
        return 2
    try:
        return HANDLERS[args.command][1](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"faceid {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
