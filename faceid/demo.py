"""The end-to-end demo: faces -> train -> evaluate on held-out identities -> galleries. On generated data by
default (a fresh clone needs nothing else); with `data`, on an identity-folder tree of photos, detected once
by MTCNN. The galleries are made with the model the demo trained and, when the pretrained extra is installed,
with dlib_resnet_v1 beside it; each model gets the held-out faces aligned onto its own crop template from
the same landmarks (faceid.demo_faces). Part of the command layer: each stage is imported inside its step."""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from faceid.face_selection import DEFAULT_SELECT

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-synthetic.yaml"
PRETRAINED = "dlib_resnet_v1"


def run_demo(out_dir: Path, config_path: Path = DEMO_CONFIG, overrides: Sequence[str] = (),
             data: Path | None = None, select: str = DEFAULT_SELECT) -> dict:
    """Run the four stages into `out_dir`, printing progress; returns the training summary, the held-out
    reports and each gallery's results. `data` is an identity-folder tree of photos to use instead of
    generated faces. `overrides` are `KEY=VALUE` settings applied after the demo's own (data.root,
    training.run_dir)."""
    from faceid.config import load_config

    out_dir = Path(out_dir)
    root = out_dir / "synthetic" / "aligned" if data is None else out_dir / "photos" / "aligned"
    config = load_config(config_path, [f"data.root={root}", f"training.run_dir={out_dir / 'run'}", *overrides])
    faces = _generate(config, out_dir) if data is None else _detect(config, Path(data), select)
    trained = _train(config)
    held_out, reports = _evaluate(config, trained["model"], out_dir)
    galleries = _galleries(config, trained["model"], faces, held_out, out_dir)
    return {"training": trained, **reports, "galleries": galleries}


def _generate(config, out_dir: Path) -> list:
    from faceid.data.synthetic import generate_dataset
    from faceid.demo_faces import synthetic_faces

    synth = config.synth
    print(f"[1/4] generating {synth.identities} synthetic identities x {synth.images_per_identity} images "
          f"in {out_dir}")
    summary = generate_dataset(out_dir / "synthetic", synth.identities, synth.images_per_identity, synth.seed,
                               synth.canvas_size, synth.aligned_size)
    print(f"      raw faces + landmarks: {summary['raw']}; aligned crops: {summary['aligned']}")
    return synthetic_faces(Path(summary["raw"]))


def _detect(config, data: Path, select: str) -> list:
    """Detect the `select` face (the subject) of every photo once (MTCNN) and align the crops the demo trains on."""
    from faceid.demo_faces import detected_faces, write_crops
    from faceid.model_input import ModelInput

    if not data.is_dir():
        raise ValueError(f"--data {data} is not a directory (expected identity folders of photos: DIR/<name>/<photo>)")
    print(f"[1/4] detecting faces in {data} (MTCNN, the {select} face of each photo)")
    faces, missed = detected_faces(data, config.device, select)
    template = ModelInput(input_size=config.model.input_size).crop_template()
    write_crops(faces, template, config.data.root)
    print(f"      {len(faces)} of {len(faces) + len(missed)} photos have a face"
          + (f" (left out: {', '.join(i.relative for i in missed[:5])}{' ...' if len(missed) > 5 else ''})"
             if missed else "")
          + f"; crops for {config.model.backbone} ({template.height} px): {config.data.root}")
    return faces


def _train(config) -> dict:
    from faceid.training.trainer import Trainer

    print(f"[2/4] training {config.model.backbone} with {config.loss.name} on {config.device} "
          f"({config.training.epochs} epochs), run directory {config.training.run_dir}")
    trained = Trainer(config).train()
    print(f"      {trained['steps']} steps in {trained['seconds']:.0f} s ({trained['images_per_second']:.0f} images/s)")
    return trained


def _evaluate(config, model: str, out_dir: Path) -> tuple[list, dict]:
    """Untrained and trained backbone on pairs of the identities held out of training."""
    from faceid.data.dataset import split_identities
    from faceid.data.folder import list_identity_folder
    from faceid.data.protocols import build_pair_protocol
    from faceid.evaluation.runner import evaluate_pairs
    from faceid.torch_embedder import TorchEmbedder

    print("[3/4] evaluating on held-out identities (never seen in training)")
    _, held_out = split_identities(list_identity_folder(config.data.root), config.data.validation_fraction, config.seed)
    protocol = build_pair_protocol(held_out, config.evaluation.folds, config.evaluation.pairs_per_fold, config.seed)
    baseline = TorchEmbedder.untrained(config.model.backbone, config.model.embedding_dim, config.model.input_size,
                                       device=config.device)
    untrained = evaluate_pairs(protocol, out_dir / "report-untrained", f"untrained {config.model.backbone}",
                               config.data.root, embedder=baseline, progress=False)
    report = evaluate_pairs(protocol, out_dir / "report", model, config.data.root,
                            embedder=TorchEmbedder.from_checkpoint(model, config.device), progress=False)
    print((out_dir / "report" / "report.md").read_text())
    before, after = untrained["verification"], report["verification"]
    print(f"held-out 10-fold accuracy: untrained {100 * before['accuracy_10fold_mean']:.1f}% -> "
          f"trained {100 * after['accuracy_10fold_mean']:.1f}% ± {100 * after['accuracy_10fold_std']:.1f}%")
    print(f"report: {out_dir / 'report' / 'report.md'} (plots beside it); model: {model}")
    return held_out, {"untrained": untrained, "trained": report}


def _galleries(config, checkpoint: str, faces: list, held_out: list, out_dir: Path) -> dict:
    """Export the trained model to ONNX, then run the gallery demo with it and with the pretrained model,
    each on the held-out faces aligned onto its own crop template."""
    from faceid.demo_faces import write_crops
    from faceid.export.embedder import OnnxEmbedder
    from faceid.export.onnx_export import export_onnx
    from faceid.gallery.demo import gallery_demo

    print("[4/4] exporting to ONNX, enrolling held-out identities in a gallery, identifying probes")
    parity = export_onnx(checkpoint, out_dir / "model.onnx")
    print(f"      {out_dir / 'model.onnx'}: {parity}")
    models = {f"trained {config.model.backbone}": (OnnxEmbedder(out_dir / "model.onnx", device="cpu"), "gallery")}
    pretrained = _pretrained_embedder(config.device)
    if pretrained is not None:
        models[PRETRAINED] = (pretrained, f"gallery-{PRETRAINED}")
    held = {(item.identity, item.path.stem) for item in held_out}
    held_faces = [face for face in faces if (face.image.identity, face.image.path.stem) in held]
    results = {}
    for name, (embedder, folder) in models.items():
        template = embedder.model_input.crop_template()
        print(f"      --- {name}: held-out faces aligned onto {embedder.model_input.alignment} "
              f"({template.height} px) from their landmarks")
        crops = write_crops(held_faces, template, out_dir / "crops" / folder)
        results[name] = gallery_demo(embedder, crops, out_dir / folder, config.seed)
    return results


def _pretrained_embedder(device: str):
    """dlib_resnet_v1 when the pretrained extra is installed (or the model is cached already), else None."""
    from faceid.zoo import cached_path

    if cached_path(PRETRAINED) is None and importlib.util.find_spec("face_recognition_models") is None:
        print(f"      ({PRETRAINED} left out: the pretrained extra is not installed; "
              "pip install 'faceid[pretrained]' to compare with it)")
        return None
    from faceid.export.embedder import load_embedder

    return load_embedder(PRETRAINED, device)
