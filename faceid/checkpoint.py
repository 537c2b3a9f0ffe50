"""The backbone checkpoint (`model.pt`, `best.pt`, a converted zoo model): what any faceid embedder loads.

A backbone checkpoint is a `torch.save`d mapping with `format` (`CHECKPOINT_FORMAT`), `backbone` (a
name of `faceid.backbones`), `embedding_dim`, `input_size` and `state_dict`, optionally
`backbone_options` (the family's own `build_backbone` options), `preprocessing` and `alignment` (the
model's input, when it is not faceid's default at that size), and whatever else its writer records
(`loss`, `config_hash`, `step`, `init`, `zoo_name`...). `read_backbone_checkpoint` is the one reader:
every check of a checkpoint file happens there, and its errors name the file.
"""

from dataclasses import dataclass
from pathlib import Path

import torch

from faceid.backbones import build_backbone
from faceid.model_input import DEFAULT_ALIGNMENT, ModelInput, alignment_text

CHECKPOINT_FORMAT = "faceid-backbone-1"
FORMAT_FAMILY = "faceid-backbone-"  # every version of the backbone format starts so
REQUIRED_KEYS = ("backbone", "embedding_dim", "input_size", "state_dict")
CORE_KEYS = ("format", *REQUIRED_KEYS, "backbone_options")  # the fields of `BackboneCheckpoint`; the rest is extra


@dataclass(frozen=True)
class BackboneCheckpoint:
    """A backbone checkpoint, read and checked: build the network with `build()`."""

    path: Path
    backbone: str
    embedding_dim: int
    input_size: int
    options: dict  # `backbone_options`: keyword arguments of `build_backbone`
    state_dict: dict
    model_input: ModelInput  # the recorded one, or faceid's default at `input_size`
    extra: dict  # every other key as stored: `preprocessing`, `alignment`, `loss`, `config_hash`, `init`...

    def build(self) -> torch.nn.Module:
        """A fresh backbone holding the checkpoint's weights."""
        model = build_backbone(self.backbone, self.embedding_dim, self.input_size, **self.options)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as error:
            raise ValueError(f"{self.path}: its weights do not fit backbone {self.backbone!r}: {error}") from None
        return model


def save_backbone_checkpoint(path: str | Path, model: torch.nn.Module, backbone: str, embedding_dim: int,
                             input_size: int = 112, extra: dict | None = None) -> None:
    """Write the backbone checkpoint of `model` that `read_backbone_checkpoint` reads back; `extra` adds
    keys (`backbone_options`, `preprocessing`, `alignment`, provenance) but cannot replace the core ones."""
    extra = extra or {}
    clashing = [key for key in extra if key in ("format", *REQUIRED_KEYS)]
    if clashing:
        raise ValueError(f"{path}: extra keys {clashing} would replace the checkpoint's own fields")
    torch.save({"format": CHECKPOINT_FORMAT, "backbone": backbone, "embedding_dim": embedding_dim,
                "input_size": input_size, "state_dict": model.state_dict(), **extra}, path)


def read_backbone_checkpoint(path: str | Path) -> BackboneCheckpoint:
    """Read and check the backbone checkpoint at `path`. FileNotFoundError when there is no such file;
    ValueError, naming `path`, when it is not a PyTorch file, not a faceid backbone checkpoint (a
    training state `checkpoints/last.pt` is not one), of another format version, lacks a key or holds
    a field of the wrong type."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if not path.is_file():
        raise ValueError(f"checkpoint {path} is not a file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from None
    found = raw.get("format") if isinstance(raw, dict) else None
    if not (isinstance(found, str) and found.startswith(FORMAT_FAMILY)):
        kind = f"its format is {found!r}" if found is not None else f"a {type(raw).__name__} without a format"
        raise ValueError(f"{path} is not a faceid backbone checkpoint ({kind}; a run's model.pt or best.pt is one, "
                         f"checkpoints/last.pt is not)")
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is a faceid backbone checkpoint of format {found!r}, which this faceid cannot "
                         f"read (it reads {CHECKPOINT_FORMAT})")
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise ValueError(f"{path}: the backbone checkpoint lacks {missing} (it needs {list(REQUIRED_KEYS)})")
    _check_fields(raw, path)
    return BackboneCheckpoint(path, raw["backbone"], raw["embedding_dim"], raw["input_size"],
                              raw.get("backbone_options") or {}, raw["state_dict"], _model_input(raw, path),
                              {key: value for key, value in raw.items() if key not in CORE_KEYS})


def _check_fields(raw: dict, path: Path) -> None:
    if not isinstance(raw["backbone"], str) or not raw["backbone"]:
        raise ValueError(f"{path}: backbone must be a backbone name, got {raw['backbone']!r}")
    for key in ("embedding_dim", "input_size"):
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{path}: {key} must be a positive integer, got {value!r}")
    if not isinstance(raw["state_dict"], dict):
        raise ValueError(f"{path}: state_dict must be a mapping of tensors, got {type(raw['state_dict']).__name__}")
    options = raw.get("backbone_options") or {}
    if not isinstance(options, dict):
        raise ValueError(f"{path}: backbone_options must be a mapping, got {type(options).__name__}")


def _model_input(raw: dict, path: Path) -> ModelInput:
    """The model input the checkpoint records (pretrained conversions carry their own mean/std and
    alignment), or faceid's default at the checkpoint's input size."""
    alignment = raw.get("alignment", DEFAULT_ALIGNMENT)
    recorded = raw.get("preprocessing")
    if recorded is None:
        return ModelInput(input_size=raw["input_size"], alignment=alignment_text(alignment, str(path)))
    if not isinstance(recorded, dict):
        raise ValueError(f"{path}: preprocessing must be a mapping, got {type(recorded).__name__}")
    return ModelInput.from_description({"alignment": alignment, **recorded}, f"{path} preprocessing")
