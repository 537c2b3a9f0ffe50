import pytest

from faceid.config import ConfigError, FaceidConfig, load_config


def test_defaults_load_without_a_file():
    config = load_config()
    assert isinstance(config, FaceidConfig)
    assert config.device == "auto"


def test_yaml_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 0.5\n  epochs: 3\nloss:\n  name: cosface\n  params: {s: 30}\n")
    config = load_config(path, ["training.lr=0.1", "device=cpu", "loss.params.m=0.4"])
    assert config.training.lr == 0.1 and config.training.epochs == 3
    assert config.device == "cpu"
    assert config.loss.params == {"s": 30, "m": 0.4}


def test_integer_is_accepted_for_a_float():
    assert load_config(overrides=["training.lr=1"]).training.lr == 1.0


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("training.lr=fast", "training.lr", "expected float"),
        ("synth.identities=abc", "synth.identities", "expected int"),
        ("synth.identities=2.5", "synth.identities", "expected int"),
        ("device=gpu", "device", "Literal['auto', 'cpu', 'cuda']"),
        ("training.optimizer=adam", "training.optimizer", "Literal['sgd', 'adamw']"),
    ],
)
def test_wrong_types_name_the_key_and_the_expected_type(override, key, expected):
    with pytest.raises(ConfigError) as error:
        load_config(overrides=[override])
    assert f"{key}: " in str(error.value)
    assert expected in str(error.value)


@pytest.mark.parametrize("override, key", [("traning.lr=0.1", "traning"),
                                           ("training.learning_rate=0.1", "training.learning_rate")])
def test_unknown_keys_are_rejected(override, key):
    with pytest.raises(ConfigError, match=f"{key}: unknown key"):
        load_config(overrides=[override])


def test_unknown_key_in_a_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  backbone: small_cnn\n  embeding_dim: 64\n")
    with pytest.raises(ConfigError, match="model.embeding_dim: unknown key"):
        load_config(path)


def test_bad_override_syntax_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(overrides=["training.lr"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")


def test_range_constraints():
    with pytest.raises(ConfigError, match="synth.identities"):
        load_config(overrides=["synth.identities=0"])


def test_exponent_floats_without_a_dot(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("training:\n  lr: 1e-3\n")
    assert load_config(path).training.lr == 1e-3
    assert load_config(overrides=["training.lr=5E-4"]).training.lr == 5e-4


def test_every_preset_in_configs_is_valid():
    from pathlib import Path

    presets = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert len(presets) >= 4
    for preset in presets:
        load_config(preset)
