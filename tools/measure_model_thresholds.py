"""Measure a zoo model's default verification threshold on public photos, and what it gives on held-out data.

    python tools/measure_model_thresholds.py --model dlib_resnet_v1 --data ../shared/data --cache /tmp/thresholds

Every image of each set is embedded once with faceid's own pipeline (MTCNN, the subject face (`select: subject`),
the model's alignment; `faceid embed`), cached in `--cache`. celeba_wild's identities are split in two halves by
`--seed`: on the first ("choose") the threshold is the lowest cosine whose FAR over all its impostor pairs is at
most `--target-far`; the FAR and TAR it gives (all genuine and impostor pairs of each set) are then reported on the
other half and on each studio set, none of which chose it. The table goes to stdout (markdown) and, with `--out`, to
a JSON file.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from faceid.evaluation.verification import threshold_at_far

SETS = ("celeba_wild", "orl", "yale", "essex_grimace", "essex_faces94")


def pair_scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores and same-identity flags of every pair (i < j) of unit embeddings."""
    upper = np.triu_indices(len(labels), 1)
    return (embeddings @ embeddings.T)[upper], (labels[:, None] == labels[None, :])[upper]


def rates(scores: np.ndarray, is_same: np.ndarray, threshold: float) -> dict:
    accepted = scores >= threshold
    return {"far": float(accepted[~is_same].mean()), "tar": float(accepted[is_same].mean()),
            "genuine_pairs": int(is_same.sum()), "impostor_pairs": int((~is_same).sum())}


def embedded_set(model: str, root: Path, cache: Path, device: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(unit embeddings, identity labels, photos with no usable face) of one identity-folder set, cached."""
    from faceid.data.folder import list_identity_folder
    from faceid.export.embed_files import embed_files

    file = cache / f"{model}-{root.name}.npz"
    items = list_identity_folder(root)
    if not file.exists():
        embed_files([item.path for item in items], model, file, device=device)
    with np.load(file) as data:
        paths, embeddings = [str(p) for p in data["paths"]], data["embeddings"]
    label_of = {str(item.path): item.identity for item in items}
    return embeddings, np.array([label_of[p] for p in paths]), len(items) - len(paths)


def measure(model: str, data: Path, cache: Path, target_far: float, seed: int, device: str = "cpu") -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    sets = {name: embedded_set(model, data / name, cache, device) for name in SETS if (data / name).is_dir()}
    embeddings, labels, _ = sets["celeba_wild"]
    people = np.random.default_rng(seed).permutation(np.unique(labels))
    choose = np.isin(labels, people[: len(people) // 2])
    halves = {"celeba_wild (choose half)": choose, "celeba_wild (held-out half)": ~choose}
    scored = {name: pair_scores(embeddings[mask], labels[mask]) for name, mask in halves.items()}
    threshold = threshold_at_far(*scored["celeba_wild (choose half)"], target_far)["threshold"]
    scored.update({name: pair_scores(*sets[name][:2]) for name in sets if name != "celeba_wild"})
    rows = {name: {**rates(*pair, threshold), "no_face": sets.get(name, (None, None, 0))[2]}
            for name, pair in scored.items()}
    return {"model": model, "target_far": target_far, "seed": seed, "threshold": round(threshold, 4),
            "people_choosing": int(len(people) // 2), "sets": rows}


def markdown(result: dict) -> str:
    lines = [f"{result['model']}: threshold {result['threshold']:.4f} (FAR {result['target_far']:g} on "
             f"{result['people_choosing']} celeba_wild people, seed {result['seed']})", "",
             "| data | used to choose it | genuine / impostor pairs | FAR | TAR |", "|---|---|---:|---:|---:|"]
    for name, row in result["sets"].items():
        lines.append(f"| {name} | {'yes' if 'choose' in name else 'no'} | {row['genuine_pairs']:,} / "
                     f"{row['impostor_pairs']:,} | {row['far']:.2e} | {100 * row['tar']:.2f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="dlib_resnet_v1", help="a zoo model available here")
    parser.add_argument("--data", type=Path, required=True, help="the folder holding celeba_wild and the studio sets")
    parser.add_argument("--cache", type=Path, required=True, help="where each set's embeddings are kept")
    parser.add_argument("--target-far", type=float, default=1e-3, help="FAR the threshold holds on the choose half")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split of celeba_wild's identities")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    result = measure(args.model, args.data, args.cache, args.target_far, args.seed, args.device)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
