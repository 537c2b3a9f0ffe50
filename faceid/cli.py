"""The `faceid` command. Thin: each subcommand imports its stage lazily, inside its handler."""

import argparse
import json
import os
import sys
from pathlib import Path

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
    "bench": "benchmarks (losses, detect, embed, gallery) printing ratios to a baseline from the same run",
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
    if int(os.environ.get("RANK", "0")) == 0:
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


def _gallery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("gallery", type=Path, help="gallery directory")
    parser.add_argument("--model", default=None, help="embedding model (needed when the gallery is created)")
    parser.add_argument("--aligned", action="store_true", default=None,
                        help="images are aligned crops: skip detection (remembered by a new gallery)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])


def _add_enroll(parser: argparse.ArgumentParser) -> None:
    _gallery_options(parser)
    parser.add_argument("images", nargs="*", type=Path, help="images of --identity")
    parser.add_argument("--identity", help="the identity the images belong to")
    parser.add_argument("--from-folder", type=Path, help="an identity-folder tree: one identity per sub-folder")
    parser.add_argument("--index", default="Flat", help="FAISS factory string for a new gallery (default Flat: exact), "
                        "or auto: exact while small, then IVF with nprobe tuned to recall@1 0.99")
    parser.add_argument("--policy", choices=["all", "mean"], default="all", help="template policy of a new gallery")


def _run_enroll(args) -> int:
    from gallery.enrollment import enroll_folder, enroll_images
    from gallery.session import open_gallery

    if bool(args.identity) == bool(args.from_folder):
        raise ValueError("give either --identity NAME IMAGES... or --from-folder DIR")
    gallery = open_gallery(args.gallery, args.model, args.aligned, args.device, args.index, args.policy, create=True)
    summary = (enroll_folder(gallery, args.from_folder) if args.from_folder
               else enroll_images(gallery, args.identity, args.images))
    print(json.dumps(summary, indent=2))
    return 0 if summary["enrolled_samples"] or summary["duplicates"] else 1


def _add_verify(parser: argparse.ArgumentParser) -> None:
    _gallery_options(parser)
    parser.add_argument("image", type=Path)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--threshold", type=float, default=None, help="default: the gallery's calibrated threshold")


def _run_verify(args) -> int:
    from dataclasses import asdict

    from gallery.session import open_gallery

    decision = open_gallery(args.gallery, args.model, args.aligned, args.device).verify(args.image, args.identity,
                                                                                       args.threshold)
    print(json.dumps(asdict(decision), indent=2))
    return 0


def _add_identify(parser: argparse.ArgumentParser) -> None:
    _gallery_options(parser)
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("-k", type=int, default=5, help="candidates per probe (default 5)")
    parser.add_argument("--threshold", type=float, default=None, help="default: the gallery's calibrated threshold")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")


def _run_identify(args) -> int:
    from gallery.gallery import GalleryError
    from gallery.session import open_gallery

    gallery = open_gallery(args.gallery, args.model, args.aligned, args.device)
    rows = []
    for image in args.images:
        try:
            result = gallery.identify(image, args.k, args.threshold)
            rows.append({"image": str(image), "identity": result.identity, "candidates": result.candidates,
                         "threshold": result.threshold, "threshold_source": result.threshold_source})
        except GalleryError as error:
            rows.append({"image": str(image), "error": str(error)})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['image']}: error: {row['error']}")
                continue
            best = ", ".join(f"{name} {score:.3f}" for name, score in row["candidates"])
            threshold = "none" if row["threshold"] is None else f"{row['threshold']:.3f}"
            print(f"{row['image']}: {row['identity']}  (threshold {threshold}; top: {best})")
    return 0 if any("error" not in row for row in rows) else 1


def _add_gallery(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("list", "enrolled identities"), ("stats", "counts, sizes, threshold"),
                       ("audit", "the append-only audit log")):
        _gallery_options(actions.add_parser(name, help=text))
    remove = actions.add_parser("remove", help="remove an identity")
    _gallery_options(remove)
    remove.add_argument("identity")
    rename = actions.add_parser("rename", help="rename an identity")
    _gallery_options(rename)
    rename.add_argument("identity")
    rename.add_argument("new_name")
    calibrate = actions.add_parser("calibrate", help="set the threshold from genuine/impostor pairs at a target FAR")
    _gallery_options(calibrate)
    calibrate.add_argument("--data", type=Path, required=True, help="identity-folder tree of calibration identities")
    calibrate.add_argument("--pairs", type=Path, default=None, help="LFW pairs.txt or CSV (default: built from --data)")
    calibrate.add_argument("--target-far", type=float, default=1e-3)
    export = actions.add_parser("export", help="write the gallery to one .npz")
    _gallery_options(export)
    export.add_argument("file", type=Path)
    imports = actions.add_parser("import", help="merge an exported .npz into the gallery")
    _gallery_options(imports)
    imports.add_argument("file", type=Path)


def _run_gallery(args) -> int:
    from gallery.enrollment import calibrate_from_folder
    from gallery.session import open_gallery

    gallery = open_gallery(args.gallery, args.model, args.aligned, args.device)
    outputs = {
        "list": lambda: gallery.list(),
        "stats": lambda: gallery.stats(),
        "audit": lambda: gallery.audit_log(),
        "remove": lambda: {"removed": args.identity, "templates": gallery.remove(args.identity)} if args.action == "remove" else None,
        "rename": lambda: gallery.rename(args.identity, args.new_name) or {"renamed": args.identity, "to": args.new_name},
        "calibrate": lambda: calibrate_from_folder(gallery, args.data, args.pairs, args.target_far),
        "export": lambda: {"written": str(gallery.export(args.file))},
        "import": lambda: gallery.import_(args.file),
    }
    print(json.dumps(outputs[args.action](), indent=2, default=str))
    return 0


def _add_serve(parser: argparse.ArgumentParser) -> None:
    _gallery_options(parser)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="require this X-API-Key header (default: $FACEID_API_KEY if set)")
    parser.add_argument("--max-request-mb", type=float, default=20.0, help="largest accepted request body")


def _run_serve(args) -> int:
    from gallery.service import serve
    from gallery.session import open_gallery

    gallery = open_gallery(args.gallery, args.model, args.aligned, args.device)
    serve(gallery, args.host, args.port, args.api_key or os.environ.get("FACEID_API_KEY"),
          int(args.max_request_mb * 1024 * 1024))
    return 0


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
    parser.add_argument("--detect", action="store_true",
                        help="the images are photos: detect and align faces first (default: aligned crops)")


def _run_evaluate(args) -> int:
    from evaluation.runner import evaluate_identification, evaluate_pairs
    from faceid.data import protocols
    from faceid.data.folder import list_identity_folder
    from export.embedder import load_embedder

    embedder = load_embedder(args.model, args.device, args.batch_size, preprocessing=args.preprocessing) if args.model else None
    model_name = args.model or str(args.embeddings)
    preprocessor = None
    if args.detect:
        from faceid.preprocessing import FacePreprocessor

        size = embedder.preprocessing.input_size if embedder else 112
        preprocessor = FacePreprocessor(select="largest", size=size, device=args.device)
    common = dict(out=args.out, model_name=model_name, data=args.data, embedder=embedder,
                  embeddings_file=args.embeddings, cache_dir=args.cache_dir or default_cache_dir(),
                  preprocessor=preprocessor)
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
    parser.add_argument("target", choices=["losses", "detect", "embed", "gallery", "gallery-search"],
                        help="what to benchmark")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions per case")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/caltech_faces"),
                        help="real photos for `bench detect` and `bench embed` (default ../shared/data/caltech_faces)")
    parser.add_argument("--limit", type=int, default=200, help="at most this many images for `bench detect`")


def _run_bench(args) -> int:
    if args.target == "gallery-search":
        from gallery.benchmark import run_search_benchmark

        run_search_benchmark(sizes=(10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000))
        return 0
    if args.target == "gallery":
        from gallery.benchmark import run_gallery_benchmark

        if args.quick:
            run_gallery_benchmark(sizes=(1_000, 10_000), approximate_at=10_000)
        else:
            run_gallery_benchmark()
        return 0
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
    print(f"[1/4] generating {synth.identities} synthetic identities x {synth.images_per_identity} images in {args.out}")
    summary = generate_dataset(args.out / "synthetic", synth.identities, synth.images_per_identity, synth.seed,
                               synth.canvas_size, synth.aligned_size)
    print(f"      raw faces + landmarks: {summary['raw']}; aligned crops: {summary['aligned']}")
    print(f"[2/4] training {config.model.backbone} with {config.loss.name} on {config.device} "
          f"({config.training.epochs} epochs), run directory {config.training.run_dir}")
    trained = Trainer(config).train()
    print(f"      {trained['steps']} steps in {trained['seconds']:.0f} s ({trained['images_per_second']:.0f} images/s)")
    print("[3/4] evaluating on held-out identities (never seen in training)")
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
    print("[4/4] exporting to ONNX, enrolling held-out identities in a gallery, identifying probes")
    from gallery.demo import gallery_demo

    gallery_demo(trained["model"], held_out, args.out, config.seed)
    return 0


HANDLERS = {"synth": (_add_synth, _run_synth), "align": (_add_align, _run_align), "train": (_add_train, _run_train),
            "compare-losses": (_add_compare_losses, _run_compare_losses), "export": (_add_export, _run_export),
            "embed": (_add_embed, _run_embed), "enroll": (_add_enroll, _run_enroll),
            "verify": (_add_verify, _run_verify), "identify": (_add_identify, _run_identify),
            "gallery": (_add_gallery, _run_gallery), "serve": (_add_serve, _run_serve), "evaluate": (_add_evaluate, _run_evaluate), "bench": (_add_bench, _run_bench), "demo": (_add_demo, _run_demo)}


def build_parser() -> argparse.ArgumentParser:
    from faceid import __version__

    parser = argparse.ArgumentParser(prog="faceid", description="Face identification: detect, align, train, "
                                     "export, enroll, verify and identify.")
    parser.add_argument("--version", action="version", version=f"faceid {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in SUMMARIES.items():
        HANDLERS[name][0](commands.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "enroll" and not any(e.startswith("-") for e in extra):
        args.images += [Path(e) for e in extra]  # `enroll GALLERY --identity NAME IMAGES...`: images after the option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return HANDLERS[args.command][1](args)
    except (ValueError, FileNotFoundError) as error:
        print(f"faceid {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
