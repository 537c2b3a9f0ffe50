import json
import subprocess
import sys

import pytest

from faceid.cli import main
from faceid.commands import COMMANDS

FACEID = [sys.executable, "-m", "faceid.cli"]


def test_help_lists_every_subcommand():
    result = subprocess.run(FACEID + ["--help"], capture_output=True, text=True, check=True)
    listing = " ".join(result.stdout.split())  # argparse wraps the summaries
    for name in ["synth", "align", "train", "export", "embed", "enroll", "verify", "identify", "gallery", "serve",
                 "evaluate", "compare-losses", "bench", "demo"]:
        assert f"{name} {COMMANDS[name].SUMMARY}" in listing


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_module_has_the_interface_and_its_help_works(name, capsys):
    module = COMMANDS[name]
    assert isinstance(module.SUMMARY, str) and module.SUMMARY
    assert callable(module.add_arguments) and callable(module.run)
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: faceid {name}") and " ".join(module.SUMMARY.split()) in " ".join(out.split())


@pytest.mark.parametrize("command", [["align", "a", "b"], ["embed", "x.png", "--model", "m", "--out", "e.npy"],
                                     ["identify", "g", "x.png"], ["gallery", "list", "g"], ["bench", "losses"]])
def test_device_rejects_a_bad_value_naming_the_choices(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--device", "tpu"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # the line after the usage
    assert "argument --device: invalid choice: 'tpu'" in error
    assert all(choice in error for choice in ("auto", "cpu", "cuda"))


@pytest.mark.parametrize(("command", "option", "value"), [
    (["align", "a", "b"], "--workers", "0"), (["prepare", "a", "b"], "--workers", "-2"),
    (["enroll", "g", "--model", "m", "--from-folder", "p"], "--workers", "0"), (["serve", "g"], "--threads", "0"),
    (["synth"], "--identities", "0"), (["identify", "g", "x.png"], "-k", "0"), (["bench", "serve"], "--workers", "0"),
    (["embed", "x.png", "--model", "m", "--out", "e.npy"], "--batch-size", "many")])
def test_counts_below_one_or_not_whole_are_refused_naming_the_option(command, option, value, capsys):
    """`--workers 0` used to reach a division by zero in `faceid align`."""
    with pytest.raises(SystemExit) as exit_info:
        main([*command, option, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {option}:" in error and ("must be at least 1" in error or "expected a whole number" in error)


def test_synth_writes_the_tree(tmp_path, capsys):
    assert main(["synth", "--json", "--identities", "2", "--images-per-identity", "3", "--out", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 6
    assert len(list((tmp_path / "aligned").rglob("*.png"))) == 6


def test_demo_reports_a_config_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--set", "synth.identitis=3"]) == 2
    assert "synth.identitis: unknown key" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_runs_end_to_end_on_a_small_setting(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--set", "synth.identities=24", "--set", "synth.images_per_identity=6",
                 "--set", "training.epochs=1", "--set", "training.batch_size=16", "--set", "model.input_size=32",
                 "--set", "evaluation.folds=2", "--set", "device=cpu"]) == 0
    out = capsys.readouterr().out
    assert "held-out 10-fold accuracy: untrained" in out
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "run" / "model.pt").is_file()
    assert "strangers answered unknown" in out and (tmp_path / "gallery" / "gallery.db").is_file()
