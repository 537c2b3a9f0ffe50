"""The one typed configuration of faceid, loaded from YAML with command-line overrides.

Every section is a pydantic model that forbids unknown keys and checks types strictly, so a typo
(`traning.lr`) or a wrong type (`training.lr: fast`) fails at load time with the full key path and
the expected type. Overrides use dotted keys: `--set training.lr=0.1`; the value is parsed as YAML.
"""

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class SynthConfig(Section):
    identities: int = Field(40, gt=0)
    images_per_identity: int = Field(10, gt=0)
    seed: int = 0
    canvas_size: int = Field(224, ge=160)
    aligned_size: int = Field(112, ge=32)


class ModelConfig(Section):
    backbone: str = "small_cnn"
    embedding_dim: int = Field(128, gt=0)
    input_size: int = Field(112, gt=0)


class LossConfig(Section):
    name: str = "arcface"
    params: dict[str, Any] = Field(default_factory=dict)


class TrainingConfig(Section):
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.1, gt=0)
    weight_decay: float = Field(5e-4, ge=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    workers: int = Field(0, ge=0)


class EvaluationConfig(Section):
    folds: int = Field(10, ge=2)
    pairs_per_fold: int = Field(300, gt=0)


class FaceidConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    synth: SynthConfig = Field(default_factory=SynthConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def _expected_type(location: tuple) -> str:
    """The annotation of the field at `location`, as text (e.g. 'float', "Literal['sgd', 'adamw']")."""
    model, annotation = FaceidConfig, None
    for part in location:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            break
        annotation = field.annotation
        model = annotation
    if annotation is None:
        return "?"
    return getattr(annotation, "__name__", None) if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: expected {_expected_type(item['loc'])}: {item['msg']} (got {item.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _apply_override(data: dict, override: str) -> None:
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like key.path=value")
    dotted, raw_value = override.split("=", 1)
    keys = dotted.strip().split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw_value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> FaceidConfig:
    """Load a YAML file (or the defaults when `path` is None) and apply `key.path=value` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for override in overrides:
        _apply_override(data, override)
    try:
        return FaceidConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
