"""`faceid compare-losses`: train one model per loss on the same data (optionally fine-tuning one
pretrained model) and evaluate each on the same identity-disjoint pairs, into one table (loss,
accuracy ± std, AUC, TAR@FAR=1e-2, training time)."""

import json
from pathlib import Path

from faceid.config import FaceidConfig, parse_yaml
from faceid.data.dataset import split_identities
from faceid.data.folder import list_identity_folder
from faceid.data.images import read_rgb
from faceid.data.protocols import build_pair_protocol
from faceid.evaluation.runner import evaluate_pairs
from faceid.torch_embedder import TorchEmbedder
from faceid.training.pretrained import check_crop_size, load_pretrained
from faceid.training.trainer import Trainer


def parse_loss(spec: str) -> tuple[str, dict]:
    """'cosface' or 'cosface:{s: 30, m: 0.2}' -> (name, hyperparameters)."""
    name, _, params = spec.partition(":")
    parsed = parse_yaml(params) if params.strip() else {}
    if not isinstance(parsed, dict):
        raise ValueError(f"loss {spec!r}: hyperparameters must be a YAML mapping, got {params!r}")
    return name.strip(), parsed


def _scores(protocol, embedder, out: Path, name: str, root: Path) -> dict:
    verification = evaluate_pairs(protocol, out, name, root, embedder=embedder, progress=False)["verification"]
    return {"accuracy": verification["accuracy_10fold_mean"], "accuracy_std": verification["accuracy_10fold_std"],
            "auc": verification["auc"], "tar_at_far_1e-2": verification["tar_at_far"]["1e-2"]}


def compare_losses(config: FaceidConfig, losses: list[str], eval_root: Path | None, out: Path,
                   init: str | None = None) -> list[dict]:
    """Without `eval_root`, the evaluation identities are the held-out share of `data.root`
    (`data.validation_fraction`). Each loss is scored with its final model (`model.pt`), which the
    validation runs during training do not influence unless early stopping or a plateau schedule is on.
    With `init` (or `model.init`) every loss fine-tunes that pretrained model, and a first row scores it
    as it is, on the same pairs."""
    if init is not None:
        config = config.model_copy(deep=True)
        config.model.init = init
    if eval_root is None:
        _, eval_images = split_identities(list_identity_folder(config.data.root), config.data.validation_fraction,
                                          config.seed)
        if not eval_images:
            raise ValueError("no evaluation identities: give --eval-data or a data.validation_fraction above 0")
    else:
        eval_images = list_identity_folder(eval_root)
    protocol = build_pair_protocol(eval_images, config.evaluation.folds, config.evaluation.pairs_per_fold, config.seed)
    root = eval_root or Path(config.data.root)
    rows = []
    if config.model.init:
        start = load_pretrained(config.model.init)
        check_crop_size(read_rgb(eval_images[0].path), start, "the evaluation data")
        rows.append({"loss": "as is", "init": config.model.init, "params": {}, "train_seconds": 0.0, "steps": 0,
                     **_scores(protocol, TorchEmbedder.from_checkpoint(start.checkpoint, config.device),
                               out / "00-as-is" / "evaluation", f"{config.model.init} as is", root)})
    for position, spec in enumerate(losses, start=1):
        name, params = parse_loss(spec)
        run_dir = out / f"{position:02d}-{name.replace('+', '_plus_')}"
        run_config = config.model_copy(deep=True)
        run_config.loss.name, run_config.loss.params = name, params
        run_config.training.run_dir = str(run_dir)
        summary = Trainer(run_config).train()
        embedder = TorchEmbedder.from_checkpoint(summary["model"], config.device)
        rows.append({"loss": name, "init": config.model.init, "params": params, "train_seconds": summary["seconds"],
                     "steps": summary["steps"], **_scores(protocol, embedder, run_dir / "evaluation",
                                                          f"{name} {params or ''}".strip(), root)})
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    lines = [f"Evaluation: {len(eval_images)} images of {len({i.identity for i in eval_images})} identities never "
             f"seen in training; {len(protocol)} pairs ({int(protocol.is_same.sum())} genuine).", "",
             "| loss | hyperparameters | 10-fold accuracy | AUC | TAR@FAR=1e-2 | train time |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        tar = row["tar_at_far_1e-2"]
        tar_text = "n/a" if tar != tar else f"{100 * tar:.1f}%"
        if row["loss"] == "as is":
            loss, params, seconds = f"{row['init']} as is", "no training", "—"
        else:
            loss, params, seconds = row["loss"], row["params"] or "defaults", f"{row['train_seconds']:.0f} s"
        lines.append(f"| {loss} | {params} | {100 * row['accuracy']:.1f}% ± {100 * row['accuracy_std']:.1f}% | "
                     f"{row['auc']:.3f} | {tar_text} | {seconds} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    return rows
