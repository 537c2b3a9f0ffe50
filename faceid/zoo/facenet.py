"""facenet-pytorch's InceptionResnetV1 weights -> a faceid `inception_resnet_v1` backbone checkpoint.

faceid's backbone wraps facenet-pytorch's module as `net` (see faceid/backbones/external.py), so
each facenet key `k` becomes `net.k`. The released state dicts also carry the training classifier
(`logits.*`, one output per training identity), which an embedder does not use: it is dropped.
The checkpoint records facenet's input convention, (pixel − 127.5) / 128 on 160 px RGB crops.
"""

from pathlib import Path

from faceid.zoo.catalog import ModelEntry, ZooError

BACKBONE = "inception_resnet_v1"


def faceid_state_dict(facenet_state: dict) -> dict:
    """facenet-pytorch InceptionResnetV1 keys -> faceid inception_resnet_v1 backbone keys."""
    return {f"net.{key}": value for key, value in facenet_state.items() if not key.startswith("logits.")}


def convert_facenet(source: str | Path, checkpoint_path: str | Path, entry: ModelEntry) -> None:
    """Read facenet weights from `source` and write the faceid checkpoint `checkpoint_path`."""
    import torch

    from faceid.backbones import build_backbone
    from faceid.checkpoint import save_backbone_checkpoint

    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ZooError(f"{source} is not a readable PyTorch file ({error}); {entry.name} expects "
                       f"{entry.download_name}") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ZooError(f"{source} is not a state dict (a mapping of tensors); {entry.name} expects "
                       f"{entry.download_name}")
    model = build_backbone(BACKBONE, entry.embedding_dim, entry.input_size)
    try:
        model.load_state_dict(faceid_state_dict(state))
    except RuntimeError as error:
        summary = " ".join(line.strip() for line in str(error).splitlines()[:2])[:300]
        raise ZooError(f"{source} does not hold facenet-pytorch InceptionResnetV1 weights "
                       f"({entry.embedding_dim}-d): {summary}") from None
    save_backbone_checkpoint(checkpoint_path, model, BACKBONE, entry.embedding_dim, entry.input_size,
                             extra={"preprocessing": entry.preprocessing(), "alignment": entry.alignment,
                                    "zoo_name": entry.name, "licence": entry.licence})
