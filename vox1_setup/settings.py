"""Where the engine settings file lives, and reading/changing it with errors the CLI can show.

The file format itself belongs to `engine.settings` (shared with the engine). Location, first match wins:
`--settings-file FILE`, `VOX1_SETTINGS`, `--app-dir DIR` (the VOX-1 folder: `DIR/vox1-settings.json`,
env `VOX1_APP_DIR`), else the platform config dir (`settings.json`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.settings import KNOWN_KEYS, EngineSettings, SettingsError, load_settings, save_settings, settings_from_dict
from vox1_setup.errors import BadInputError
from vox1_setup.paths import Paths

APP_DIR_SETTINGS_NAME = "vox1-settings.json"

F = TypeVar("F", bound=Callable[..., Any])


def settings_path(paths: Paths, settings_file: Path | None = None, app_dir: Path | None = None) -> Path:
    """The settings file to read and write (see the module docstring for the order)."""
    if settings_file is not None:
        return settings_file
    import os

    if os.environ.get("VOX1_SETTINGS"):
        return paths.settings_file
    if app_dir is not None:
        return app_dir / APP_DIR_SETTINGS_NAME
    return paths.settings_file


def settings_location_options(func: F) -> F:
    """`--settings-file FILE` and `--app-dir DIR`, shared by settings, wizard, doctor and run."""
    func = click.option(
        "--app-dir", "app_dir", envvar="VOX1_APP_DIR", default=None, metavar="DIR",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"The VOX-1 folder: settings live in DIR/{APP_DIR_SETTINGS_NAME}. Env: VOX1_APP_DIR.",
    )(func)
    return click.option(
        "--settings-file", "settings_file", default=None, metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Engine settings file to use (default: the config dir). Env: VOX1_SETTINGS.",
    )(func)


def read_settings(path: Path) -> EngineSettings:
    """Defaults when the file is missing; a BadInputError naming the key and allowed values when invalid."""
    try:
        return load_settings(path)
    except SettingsError as exc:
        raise _invalid(path, exc) from exc


def _invalid(path: Path, exc: SettingsError) -> BadInputError:
    if exc.key == "(file)":  # unreadable or not JSON: the message already names the file
        return BadInputError(f"settings file: {str(exc).removeprefix('(file): ')}",
                             "fix or delete the file, or start over with `vox1-setup settings reset`")
    return BadInputError(f"settings file {path}: {exc}",
                         "fix the value with `vox1-setup settings set KEY VALUE`, or start over with "
                         "`vox1-setup settings reset`")


def _json_object(path: Path) -> dict[str, Any] | None:
    """The file as a JSON object, unvalidated; None when it is missing, unreadable or not a JSON object."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def read_settings_to_replace(path: Path, key: str) -> EngineSettings:
    """The settings with the stored value of `key` left out, so that `settings set KEY` can repair exactly the
    invalid value the error names; every other key is still validated."""
    doc = _json_object(path)
    if doc is None or key not in KNOWN_KEYS:
        return read_settings(path)
    doc.pop(key, None)
    try:
        return settings_from_dict(doc)
    except SettingsError as exc:
        raise _invalid(path, exc) from exc


def unknown_keys(path: Path) -> dict[str, Any]:
    """The keys this version does not know, whenever the file is a JSON object (valid or not): reset keeps them."""
    doc = _json_object(path) or {}
    return {k: v for k, v in doc.items() if k not in KNOWN_KEYS and k != "schema"}


def parse_cli_value(key: str, raw: str) -> Any:
    """Text typed on the command line → the value stored. Known keys validate themselves; unknown keys
    take JSON when the text is JSON (numbers, true/false, null, lists), else the text."""
    if key in KNOWN_KEYS:
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def set_value(settings: EngineSettings, key: str, raw: str, *, allow_unknown: bool = False) -> EngineSettings:
    """A copy with `key` set; unknown keys only on request (a typo must not pass silently)."""
    if key not in KNOWN_KEYS and key not in settings.extra and not allow_unknown:
        close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.5) or [
            k for k in KNOWN_KEYS if key.lower() in k or k.startswith(key.lower()[:4])][:1]
        suggestion = f"did you mean {close[0]!r}? " if close else ""
        raise BadInputError(f"unknown settings key {key!r}; known keys: {', '.join(KNOWN_KEYS)}",
                            f"{suggestion}To store a key for a newer VOX-1 anyway, add --allow-unknown.")
    if key == "schema":
        raise BadInputError("'schema' is managed by vox1-setup and cannot be set")
    try:
        return settings.with_value(key, parse_cli_value(key, raw))
    except SettingsError as exc:
        raise BadInputError(f"invalid setting {exc}", "see `vox1-setup settings show` for the current "
                                                      "values") from exc


def write_settings(path: Path, settings: EngineSettings) -> None:
    try:
        save_settings(path, settings)
    except OSError as exc:
        raise BadInputError(f"cannot write settings file {path}: {exc.strerror or exc}",
                            "choose a writable place with --settings-file or --app-dir") from exc
