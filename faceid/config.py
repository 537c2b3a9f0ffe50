"""The one typed configuration of faceid, loaded from YAML with command-line overrides.

Every section is a pydantic model that forbids unknown keys and checks types strictly, so a typo
(`traning.lr`) or a wrong type (`training.lr: fast`) fails at load time with the full key path and
the expected type. Overrides use dotted keys: `--set training.lr=0.1`; the value is parsed as YAML.
"""

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads `1e-3` as a float (YAML 1.1 insists on a dot: `1.0e-3`)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
               r"|[0-9][0-9_]*[eE][-+]?[0-9]+|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def parse_yaml(text: str):
    return yaml.load(text, Loader=YamlLoader)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)


class SynthConfig(Section):
    identities: int = Field(40, gt=0)
    images_per_identity: int = Field(10, gt=0)
    seed: int = 0
    canvas_size: int = Field(224, ge=160)
    aligned_size: int = Field(112, ge=32)


class DataConfig(Section):
    root: str | None = None  # identity-folder tree of aligned crops, or a crop cache from `faceid prepare`
    cache: str | None = None  # a crop cache from `faceid prepare` (read instead of root's files)
    format: Literal["folder", "recordio"] = "folder"
    rec: str | None = None  # train.rec of a RecordIO pack (its .idx beside it)
    validation_fraction: float = Field(0.2, ge=0, lt=1)
    validation_root: str | None = None  # a separate identity-folder tree for validation


class ModelConfig(Section):
    backbone: str = "small_cnn"
    embedding_dim: int = Field(128, gt=0)
    input_size: int = Field(112, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)  # backbone-specific, e.g. {norm: group}
    init: str | None = None  # zoo name or backbone checkpoint to fine-tune; it fixes the four fields above
    init_head: Literal["class_means", "random"] = "class_means"  # with init: class vectors from class means


class LossConfig(Section):
    name: str = "arcface"
    params: dict[str, Any] = Field(default_factory=dict)


class ScheduleConfig(Section):
    name: Literal["constant", "cosine", "step", "poly", "plateau"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    step_epochs: list[int] = Field(default_factory=lambda: [8, 12])  # step: epochs where lr is multiplied by gamma
    gamma: float = Field(0.1, gt=0)
    power: float = Field(2.0, gt=0)  # poly
    plateau_patience: int = Field(2, ge=0)  # plateau: validations without improvement before lr x gamma
    min_lr: float = Field(0.0, ge=0)


class TrainingConfig(Section):
    epochs: int = Field(10, gt=0)
    max_steps: int | None = Field(None, gt=0)
    batch_size: int = Field(64, gt=0)  # global batch, split evenly over ranks
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    loss_lr: float | None = Field(None, gt=0)  # lr of the loss parameters (class vectors...), default lr
    weight_decay: float = Field(5e-4, ge=0)
    loss_weight_decay: float | None = Field(None, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    clip_grad_norm: float | None = Field(None, gt=0)
    amp: Literal["none", "bf16", "fp16"] = "none"  # CUDA only
    channels_last: bool = False
    compile: bool = False  # torch.compile the backbone + loss (first steps pay the compilation)
    sampler: Literal["auto", "random", "pk", "balanced"] = "auto"  # auto: pk for pair losses, else random
    images_per_identity: int = Field(4, ge=2)  # K of P x K batches
    augmentation: str | list[dict[str, Any]] = "light"
    workers: int = Field(0, ge=0)
    log_every_steps: int = Field(10, gt=0)
    validate_every_epochs: int | None = Field(1, gt=0)
    validate_every_steps: int | None = Field(None, gt=0)
    checkpoint_every_steps: int | None = Field(None, gt=0)
    early_stopping_patience: int | None = Field(None, gt=0)  # validations without improvement
    backbone_lr: float | None = Field(None, gt=0)  # lr of the backbone parameters, default lr
    freeze_backbone_epochs: int = Field(0, ge=0)  # the backbone gets no updates in the first N epochs
    freeze_bn_stats: bool = False  # BatchNorm layers in eval mode throughout (running statistics fixed)
    model_parallel_head: bool = False  # shard the class vectors across ranks (PartialFC-style)
    sample_rate: float = Field(1.0, gt=0, le=1)  # margin heads: share of class centres per step (PartialFC)
    run_dir: str = "runs/default"


class EvaluationConfig(Section):
    folds: int = Field(10, ge=2)
    pairs_per_fold: int = Field(300, gt=0)


class FaceidConfig(Section):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    synth: SynthConfig = Field(default_factory=SynthConfig)
    data: DataConfig = Field(default_factory=DataConfig)
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
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


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
    node[keys[-1]] = parse_yaml(raw_value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> FaceidConfig:
    """Load a YAML file (or the defaults when `path` is None) and apply `key.path=value` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {path} does not exist")
        loaded = parse_yaml(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"configuration file {path} must hold a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    for override in overrides:
        _apply_override(data, override)
    try:
        return FaceidConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
