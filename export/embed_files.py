"""`faceid embed`: image files -> (detect + align with the shared preprocessor) -> embeddings on disk."""

from pathlib import Path

import numpy as np
from tqdm import tqdm

from faceid.data.folder import expand_images
from faceid.data.images import ImageReadError, read_rgb
from faceid.export.embedder import load_embedder
from faceid.face_selection import DEFAULT_SELECT, rounded_box


def embed_files(inputs: list[Path], model: str, out: Path, aligned: bool = False, select: str = DEFAULT_SELECT,
                preprocessing=None, device: str = "auto", batch_size: int = 32) -> dict:
    embedder = load_embedder(model, device, batch_size, preprocessing=preprocessing)
    preprocessor = None
    if not aligned:
        from faceid.preprocessing import FacePreprocessor

        preprocessor = FacePreprocessor(select=select, device=device,
                                        size=embedder.model_input.crop_template())
    paths, crops, failures, ambiguous = [], [], {}, {}
    for path in tqdm(expand_images(inputs), desc="faces", unit="img"):
        try:
            if aligned:
                crops.append(read_rgb(path))
            else:
                faces = preprocessor(path)
                if not faces:
                    failures[str(path)] = "no face"
                    continue
                crops.append(faces[0].crop)
                if faces[0].face.ambiguous:  # another face was nearly as good a subject: name both boxes
                    ambiguous[str(path)] = {"box": rounded_box(faces[0].face.box),
                                           "other_box": rounded_box(faces[0].face.rival)}
            paths.append(str(path))
        except ImageReadError as error:
            failures[str(path)] = error.reason
    embeddings = embedder.embed(crops) if crops else np.zeros((0, embedder.embedding_dim), np.float32)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npz":
        np.savez(out, paths=np.array(paths), embeddings=embeddings,
                 ambiguous=np.array([path in ambiguous for path in paths], bool))
    else:
        np.save(out, embeddings)
        out.with_suffix(".paths.txt").write_text("\n".join(paths) + ("\n" if paths else ""))
    return {"embedded": len(paths), "failed": failures, "ambiguous": ambiguous,
            "dimension": int(embeddings.shape[1]) if len(paths) else None, "out": str(out)}

