"""Hermetic test context: every vox1-setup path points into tmp, network is loopback only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def vox1_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """All cache/journal/config files of the code under test live under tmp (VOX1_HOME)."""
    home = tmp_path / "vox1 home ü"
    home.mkdir()
    monkeypatch.setenv("VOX1_HOME", str(home))
    for var in ("VOX1_PYTHON", "VOX1_MANIFEST", "VOX1_ENV_FILE", "VOX1_SETTINGS", "VOX1_JSON", "VOX1_QUIET",
                "VOX1_VERBOSE"):
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture(scope="session")
def share_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("share")
