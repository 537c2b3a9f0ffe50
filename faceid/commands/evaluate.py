"""`faceid evaluate`: a verification or identification report for a model or for precomputed embeddings."""

import argparse
import os
from pathlib import Path

from faceid.commands.options import MODEL_HELP, add_device_option, add_select_option, positive_count

SUMMARY = "evaluate a model on a verification or identification protocol"


def default_cache_dir() -> Path:
    """Where `faceid evaluate` caches embeddings unless --cache-dir says otherwise."""
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "faceid" / "embeddings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=f"{MODEL_HELP}; baselines: untrained:<backbone>[:<dim>], pixels")
    source.add_argument("--embeddings", type=Path, help="an .npz with arrays 'paths' and 'embeddings' from any system")
    parser.add_argument("--data", type=Path, required=True, help="root of the aligned images (identity folders)")
    parser.add_argument("--pairs", type=Path,
                        help="LFW pairs.txt or a path1,path2,label CSV (paths relative to --data)")
    parser.add_argument("--protocol", choices=["verification", "identification"], default="verification",
                        help="protocol built from the --data tree when no --pairs file is given")
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument("--folds", type=positive_count, default=10, help="cross-validation folds of the built protocol")
    parser.add_argument("--pairs-per-fold", type=positive_count, default=300,
                        help="pairs per fold of the built protocol (half genuine, half impostor)")
    parser.add_argument("--unknown-fraction", type=float, default=0.3,
                        help="share of identities left out of the gallery")
    parser.add_argument("--gallery-per-identity", type=positive_count, default=1,
                        help="images per identity enrolled in the identification protocol's gallery")
    parser.add_argument("--seed", type=int, default=0, help="seed of the built protocol")
    parser.add_argument("--skip-missing", action="store_true", help="skip pairs whose images are missing")
    add_device_option(parser)
    parser.add_argument("--batch-size", type=positive_count, default=64, help="crops per embedder call")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="embedding cache (default ~/.cache/faceid/embeddings)")
    parser.add_argument("--preprocessing", type=Path, default=None,
                        help="YAML describing a third-party ONNX model's input (input_size, channel_order, mean, std)")
    parser.add_argument("--detect", action="store_true",
                        help="the images are photos: detect and align faces first (default: aligned crops)")
    add_select_option(parser)
    parser.add_argument("--no-face", choices=["center", "skip"], default="center",
                        help="with --detect, a photo where no face is found: embed its centre, as benchmarks of "
                             "centred photos do, so that every pair is scored (center), or drop its pairs (skip)")


def run(args: argparse.Namespace) -> int:
    from faceid.data import protocols
    from faceid.data.folder import list_identity_folder
    from faceid.evaluation.runner import evaluate_identification, evaluate_pairs

    embedder = _embedder(args)
    common = dict(out=args.out, model_name=args.model or str(args.embeddings), data=args.data, embedder=embedder,
                  embeddings_file=args.embeddings, cache_dir=args.cache_dir or default_cache_dir(),
                  preprocessor=_preprocessor(args, embedder), no_face=args.no_face)
    if args.pairs is not None:
        reader = protocols.read_csv_pairs if args.pairs.suffix.lower() == ".csv" else protocols.read_lfw_pairs
        report = evaluate_pairs(reader(args.pairs, args.data, skip_missing=args.skip_missing), seed=args.seed,
                                num_folds=args.folds, **common)
    elif args.protocol == "verification":
        protocol = protocols.build_pair_protocol(list_identity_folder(args.data), args.folds, args.pairs_per_fold,
                                                 args.seed)
        report = evaluate_pairs(protocol, seed=args.seed, num_folds=args.folds, **common)
    else:
        protocol = protocols.build_identification_split(list_identity_folder(args.data), args.unknown_fraction,
                                                        args.gallery_per_identity, args.seed)
        report = evaluate_identification(protocol, **common)
    print((args.out / "report.md").read_text())
    if report["images_failed"]:
        print(f"{report['images_failed']} image(s) could not be used; see failures in {args.out / 'report.json'}")
    print(f"report written to {args.out}")
    return 0


def _embedder(args: argparse.Namespace):
    """The model to embed with, or None when --embeddings gives the embeddings."""
    if not args.model:
        return None
    from faceid.export.embedder import load_embedder

    return load_embedder(args.model, args.device, args.batch_size, preprocessing=args.preprocessing)


def _preprocessor(args: argparse.Namespace, embedder):
    """With --detect, the detector and aligner that turn photos into crops of the embedder's input size."""
    if not args.detect:
        return None
    from faceid.preprocessing import FacePreprocessor

    template = embedder.model_input.crop_template() if embedder else 112
    return FacePreprocessor(select=args.select, size=template, device=args.device)
