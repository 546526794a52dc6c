"""Where vox1-setup keeps its files. One object, so tests point everything at a tmp dir with VOX1_HOME.

Layout under the home (platformdirs by default; `VOX1_HOME` puts all of it under one folder):
  cache/wheels/   downloaded wheels, keyed by sha256 (cache index beside them)
  data/journal/   install journal entries and stashes
  config/         engine settings (settings.json) unless VOX-1 passes its own app dir
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "vox1-setup"


@dataclass(frozen=True)
class Paths:
    cache: Path
    data: Path
    config: Path

    @property
    def wheel_cache(self) -> Path:
        return self.cache / "wheels"

    @property
    def journal(self) -> Path:
        return self.data / "journal"

    @property
    def locks(self) -> Path:
        return self.data / "locks"

    @property
    def settings_file(self) -> Path:
        override = os.environ.get("VOX1_SETTINGS")
        return Path(override) if override else self.config / "settings.json"


def default_paths() -> Paths:
    """`VOX1_HOME` wins (tests, portable installs); else the platform's user dirs."""
    home = os.environ.get("VOX1_HOME")
    if home:
        root = Path(home)
        return Paths(cache=root / "cache", data=root / "data", config=root / "config")
    import platformdirs

    return Paths(
        cache=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        data=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
        config=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
    )
