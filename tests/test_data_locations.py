"""`faceid.data.locations.real_data`: --data, else $FACEID_DATA[/subset], else a clear error, which the
`faceid bench` commands report without a traceback and `bench gallery` turns into a skipped column."""

from pathlib import Path

import pytest

from faceid.cli import main
from faceid.data.locations import ENVIRONMENT, DataNotConfigured, real_data


def test_explicit_then_environment_then_default(tmp_path, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, str(tmp_path))
    assert real_data(Path("mine"), "orl") == Path("mine")
    assert real_data(None, "orl") == tmp_path / "orl"
    assert real_data(None) == tmp_path
    monkeypatch.delenv(ENVIRONMENT)
    assert real_data(None, "orl", default=Path("fallback")) == Path("fallback") / "orl"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unconfigured_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv(ENVIRONMENT, raising=False)
    else:
        monkeypatch.setenv(ENVIRONMENT, value)
    with pytest.raises(DataNotConfigured, match=r"no folder given for the orl data set: pass --data FOLDER, or set "
                                                r"FACEID_DATA to the folder holding the data sets"):
        real_data(None, "orl")


@pytest.mark.parametrize("target", ["detect", "enroll", "train"])
def test_bench_commands_report_missing_data_without_a_traceback(monkeypatch, capsys, target):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    assert main(["bench", target, "--device", "cpu", "--quick"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("faceid bench: error: no folder given for the ") and "set FACEID_DATA" in error
    assert "Traceback" not in error


def test_bench_gallery_skips_the_real_probe_column_saying_why(monkeypatch, capsys):
    from faceid.gallery.benchmarks import real_faces, search

    monkeypatch.delenv(ENVIRONMENT, raising=False)
    assert "set FACEID_DATA" in real_faces.unavailable()
    assert search._real_faces(None) is None
    assert "real-probe recall skipped: no folder given for the real face data sets" in capsys.readouterr().out
