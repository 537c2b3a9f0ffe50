"""The end-to-end demo on generated data: synthesise, train, evaluate on held-out identities, then
export, enroll and identify. Part of the command layer: each stage is imported inside the step that runs it."""

from collections.abc import Sequence
from pathlib import Path

DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo-synthetic.yaml"


def run_demo(out_dir: Path, config_path: Path = DEMO_CONFIG, overrides: Sequence[str] = ()) -> dict:
    """Run the four stages into `out_dir`, printing progress; returns the training summary and the held-out
    reports. `overrides` are `KEY=VALUE` settings applied after the demo's own (data.root, training.run_dir)."""
    from faceid.config import load_config

    out_dir = Path(out_dir)
    config = load_config(config_path, [f"data.root={out_dir / 'synthetic' / 'aligned'}",
                                       f"training.run_dir={out_dir / 'run'}", *overrides])
    _generate(config, out_dir)
    trained = _train(config)
    held_out, reports = _evaluate(config, trained["model"], out_dir)
    print("[4/4] exporting to ONNX, enrolling held-out identities in a gallery, identifying probes")
    from gallery.demo import gallery_demo

    gallery = gallery_demo(trained["model"], held_out, out_dir, config.seed)
    return {"training": trained, **reports, "gallery": gallery}


def _generate(config, out_dir: Path) -> None:
    from faceid.data.synthetic import generate_dataset

    synth = config.synth
    print(f"[1/4] generating {synth.identities} synthetic identities x {synth.images_per_identity} images "
          f"in {out_dir}")
    summary = generate_dataset(out_dir / "synthetic", synth.identities, synth.images_per_identity, synth.seed,
                               synth.canvas_size, synth.aligned_size)
    print(f"      raw faces + landmarks: {summary['raw']}; aligned crops: {summary['aligned']}")


def _train(config) -> dict:
    from training.trainer import Trainer

    print(f"[2/4] training {config.model.backbone} with {config.loss.name} on {config.device} "
          f"({config.training.epochs} epochs), run directory {config.training.run_dir}")
    trained = Trainer(config).train()
    print(f"      {trained['steps']} steps in {trained['seconds']:.0f} s ({trained['images_per_second']:.0f} images/s)")
    return trained


def _evaluate(config, model: str, out_dir: Path) -> tuple[list, dict]:
    """Untrained and trained backbone on pairs of the identities held out of training."""
    from evaluation.runner import evaluate_pairs
    from faceid.data.dataset import split_identities
    from faceid.data.folder import list_identity_folder
    from faceid.data.protocols import build_pair_protocol
    from faceid.embedding import TorchEmbedder

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
