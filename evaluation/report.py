"""Writing an evaluation: `report.json`, a readable `report.md`, and PNG plots."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from faceid.evaluation.verification import roc  # noqa: E402


def _json_ready(value):
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def plot_roc(scores, is_same, path: Path, title: str) -> None:
    far, tar, _ = roc(scores, is_same)
    smallest = 1.0 / max(int((~np.asarray(is_same, bool)).sum()), 1)
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    axis.plot(np.clip(far, smallest, 1), tar, lw=2)
    axis.set_xscale("log")
    axis.set_xlim(smallest, 1)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("false accept rate (log scale)")
    axis.set_ylabel("true accept rate")
    axis.set_title(title)
    axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_score_histograms(scores, is_same, threshold: float, path: Path, title: str) -> None:
    scores, is_same = np.asarray(scores), np.asarray(is_same, bool)
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    low, high = float(scores.min()), float(scores.max())
    if high - low < 1e-6:  # one score only: a zero-width range has no density
        low, high = low - 0.01, high + 0.01
    bins = np.linspace(low, high, 50)
    for name, chosen in (("genuine", is_same), ("impostor", ~is_same)):
        if chosen.any():
            axis.hist(scores[chosen], bins=bins, alpha=0.6, label=f"{name} ({chosen.sum()})", density=True)
    axis.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3f}")
    axis.set_xlabel("cosine similarity")
    axis.set_ylabel("density")
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_cmc(curve, path: Path, title: str) -> None:
    ranks = np.arange(1, len(curve) + 1)
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    axis.plot(ranks, curve, marker="o", ms=3)
    axis.set_xlabel("rank")
    axis.set_ylabel("identification rate")
    axis.set_ylim(0, 1.01)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _percent(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}%"


def _failure_reasons(counts: dict) -> str:
    reasons = [f"{kind}: {count}" for kind, count in counts.items() if count]
    return f" ({', '.join(reasons)})" if reasons else ""


def markdown(report: dict) -> str:
    lines = [f"# faceid evaluation: {report['protocol']}", "",
             f"- model: `{report['model']}`", f"- data: `{report['data']}`",
             f"- images embedded: {report['images_embedded']}, failed: {report['images_failed']}"
             + _failure_reasons(report.get("images_failed_by_reason", {}))]
    if "photos" in report:
        photos = report["photos"]
        lines.append(f"- faces chosen by `{report['face_selection']}`; no face found (scored from the centre): "
                     f"{photos['no_face_scored_from_centre']}; an ambiguous face: {photos['ambiguous']} "
                     "(listed in report.json)")
    if report.get("pairs_skipped"):
        lines.append(f"- pairs skipped (an image of the pair failed): {report['pairs_skipped']}")
    if "verification" in report:
        v = report["verification"]
        lines += ["", "## Verification", "",
                  "| metric | value |", "|---|---|",
                  f"| 10-fold accuracy | {_percent(v['accuracy_10fold_mean'])} "
                  f"± {_percent(v['accuracy_10fold_std'])} |",
                  f"| AUC | {v['auc']:.4f} |", f"| EER | {_percent(v['eer'])} |",
                  f"| best threshold | {v['best_threshold']:.4f} |",
                  f"| genuine / impostor pairs | {v['num_genuine']} / {v['num_impostor']} |"]
        lines += [f"| TAR @ FAR={key} | {_percent(value)} |" for key, value in v["tar_at_far"].items()]
        lines += ["", "TAR@FAR uses the most permissive threshold whose empirical FAR does not exceed the target "
                  "(no interpolation); n/a where the target is below 1/number of impostor pairs.", "",
                  "![ROC](roc.png)", "", "![scores](score_histogram.png)"]
    if "identification" in report:
        i = report["identification"]
        lines += ["", "## Identification", "", "| metric | value |", "|---|---|",
                  f"| rank-1 | {_percent(i['rank1'])} |", f"| rank-5 | {_percent(i['rank5'])} |",
                  f"| enrolled identities | {i['num_gallery_identities']} |",
                  f"| mated / non-mated probes | {i['num_mated_probes']} / {i['num_non_mated_probes']} |"]
        lines += [f"| DIR @ FPIR={key} (FNIR) | {_percent(value)} ({_percent(i['fnir_at_fpir'][key])}) |"
                  for key, value in i["dir_at_fpir"].items()]
        lines += ["", "![CMC](cmc.png)"]
    if "quality" in report:
        q = report["quality"]
        lines += ["", "## Embedding space (cosine)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key.replace('_', ' ')} | {value:.4f} |" for key, value in q.items()]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(_json_ready(report), indent=2))
    (out / "report.md").write_text(markdown(report))
    return out / "report.md"
