"""`faceid compare-losses`: train one model per loss on the same data and evaluate each on the same
identity-disjoint pairs, into one table (loss, accuracy ± std, TAR@FAR=1e-2, training time)."""

import json
from pathlib import Path

from evaluation.runner import evaluate_pairs
from faceid.config import FaceidConfig, parse_yaml
from faceid.data.dataset import split_identities
from faceid.data.folder import list_identity_folder
from faceid.data.protocols import build_pair_protocol
from faceid.embedding import TorchEmbedder
from training.trainer import Trainer


def parse_loss(spec: str) -> tuple[str, dict]:
    """'cosface' or 'cosface:{s: 30, m: 0.2}' -> (name, hyperparameters)."""
    name, _, params = spec.partition(":")
    parsed = parse_yaml(params) if params.strip() else {}
    if not isinstance(parsed, dict):
        raise ValueError(f"loss {spec!r}: hyperparameters must be a YAML mapping, got {params!r}")
    return name.strip(), parsed


def compare_losses(config: FaceidConfig, losses: list[str], eval_root: Path | None, out: Path) -> list[dict]:
    """Without `eval_root`, the evaluation identities are the held-out share of `data.root`
    (`data.validation_fraction`). Each loss is scored with its final model (`model.pt`), which the
    validation runs during training do not influence unless early stopping or a plateau schedule is on."""
    if eval_root is None:
        _, eval_images = split_identities(list_identity_folder(config.data.root), config.data.validation_fraction,
                                          config.seed)
        if not eval_images:
            raise ValueError("no evaluation identities: give --eval-data or a data.validation_fraction above 0")
    else:
        eval_images = list_identity_folder(eval_root)
    protocol = build_pair_protocol(eval_images, config.evaluation.folds, config.evaluation.pairs_per_fold, config.seed)
    rows = []
    for position, spec in enumerate(losses, start=1):
        name, params = parse_loss(spec)
        run_dir = out / f"{position:02d}-{name.replace('+', '_plus_')}"
        run_config = config.model_copy(deep=True)
        run_config.loss.name, run_config.loss.params = name, params
        run_config.training.run_dir = str(run_dir)
        summary = Trainer(run_config).train()
        embedder = TorchEmbedder.from_checkpoint(summary["model"], config.device)
        report = evaluate_pairs(protocol, run_dir / "evaluation", f"{name} {params or ''}".strip(),
                                eval_root or config.data.root, embedder=embedder, progress=False)
        verification = report["verification"]
        rows.append({"loss": name, "params": params, "accuracy": verification["accuracy_10fold_mean"],
                     "accuracy_std": verification["accuracy_10fold_std"], "auc": verification["auc"],
                     "tar_at_far_1e-2": verification["tar_at_far"]["1e-2"], "train_seconds": summary["seconds"],
                     "steps": summary["steps"]})
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.json").write_text(json.dumps(rows, indent=2))
    lines = [f"Evaluation: {len(eval_images)} images of {len({i.identity for i in eval_images})} identities never "
             f"seen in training; {len(protocol)} pairs ({int(protocol.is_same.sum())} genuine).", "",
             "| loss | hyperparameters | 10-fold accuracy | AUC | TAR@FAR=1e-2 | train time |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        tar = row["tar_at_far_1e-2"]
        tar_text = "n/a" if tar != tar else f"{100 * tar:.1f}%"
        lines.append(f"| {row['loss']} | {row['params'] or 'defaults'} | {100 * row['accuracy']:.1f}% ± "
                     f"{100 * row['accuracy_std']:.1f}% | {row['auc']:.3f} | {tar_text} | "
                     f"{row['train_seconds']:.0f} s |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    return rows
