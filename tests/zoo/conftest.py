"""Every zoo test gets its own model cache ($FACEID_HOME) and starts online with the default timeout."""

import pytest


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEID_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FACEID_OFFLINE", raising=False)
    monkeypatch.delenv("FACEID_DOWNLOAD_TIMEOUT", raising=False)
    return tmp_path / "home"
