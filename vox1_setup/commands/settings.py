"""`vox1-setup settings [show | set KEY VALUE | reset]`: the CLI twin of VOX-1's Advanced Settings tab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from engine.settings import KNOWN_KEYS, MAX_BATCH_SIZE, EngineSettings
from vox1_setup.commands._common import app_context, emit_json, info, output_options
from vox1_setup.settings import (
    read_settings,
    read_settings_to_replace,
    set_value,
    settings_location_options,
    settings_path,
    unknown_keys,
    write_settings,
)

SHOW_SCHEMA = "vox1-settings-show/1"
NOT_SET = "not set (`vox1-setup run` needs it)"

_ALLOWED = {
    "attention_implementation": "auto | flash_attention_2 | sdpa | eager",
    "batch_size": f"auto | integer 1-{MAX_BATCH_SIZE}",
    "dtype": "auto | bfloat16 | float16 | float32",
    "device": "auto | cpu | cuda | cuda:N",
    "model_path": "folder or model id (`vox1-setup run` needs it)",
}


def _location(settings_file: Path | None, app_dir: Path | None) -> Path:
    ctx = click.get_current_context()
    parent = ctx.parent.params if ctx.parent is not None else {}
    return settings_path(app_context().paths, settings_file or parent.get("settings_file"),
                         app_dir or parent.get("app_dir"))


def _report(path: Path, settings: EngineSettings) -> dict[str, Any]:
    return {"schema": SHOW_SCHEMA, "path": str(path), "exists": path.is_file(), "settings": settings.to_dict()}


def _show(path: Path) -> None:
    settings = read_settings(path)
    if app_context().json:
        emit_json(_report(path, settings))
        return
    doc = settings.to_dict()
    state = "" if path.is_file() else "  (no file yet: these are the defaults)"
    info(f"settings file: {path}{state}", bold=True)
    for key in KNOWN_KEYS:
        value = doc[key]
        shown = str(value) if value is not None else "(not set)" if key == "model_path" else "(default)"
        info(f"  {key:<26} {shown:<20} allowed: {_ALLOWED.get(key, '')}")
    for key, value in settings.extra.items():
        info(f"  {key:<26} {value!s:<20} (not a VOX-1 setting known to this version; kept)")


@click.group(invoke_without_command=True)
@settings_location_options
@output_options
@click.pass_context
def settings(ctx: click.Context, settings_file: Path | None, app_dir: Path | None) -> None:
    """Show or change the engine settings (attention, batch size, dtype, device, model).

    Without a subcommand: `show`.
    """
    if ctx.invoked_subcommand is None:
        _show(_location(settings_file, app_dir))


@settings.command("show")
@settings_location_options
@output_options
def show(settings_file: Path | None, app_dir: Path | None) -> None:
    """Print the settings in effect and where they are stored."""
    _show(_location(settings_file, app_dir))


# VALUE may look like an option (`batch_size -3`): take it as the value, so the error names the key.
@settings.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@click.option("--allow-unknown", is_flag=True, default=False,
              help="Store a key this version does not know (for a newer VOX-1).")
@settings_location_options
@output_options
def set_(key: str, value: str, allow_unknown: bool, settings_file: Path | None, app_dir: Path | None) -> None:
    """Set KEY to VALUE (validated; the file is replaced atomically)."""
    path = _location(settings_file, app_dir)
    current = read_settings_to_replace(path, key)  # an invalid stored value of KEY is what set repairs
    updated = set_value(current, key, value, allow_unknown=allow_unknown)
    write_settings(path, updated)
    if app_context().json:
        emit_json(_report(path, updated))
        return
    stored = updated.to_dict()[key]
    info(f"{key} cleared: {NOT_SET}  ({path})" if stored is None else f"{key} = {stored}  ({path})")
    if key == "attention_implementation" and value.strip().lower() == "flash_attention_2":
        info("flash_attention_2 is forced: VOX-1 will stop with an error if it cannot load. "
             "Check this machine with `vox1-setup doctor`.", fg="yellow")


@settings.command("reset")
@settings_location_options
@output_options
def reset(settings_file: Path | None, app_dir: Path | None) -> None:
    """Go back to the defaults (keys unknown to this version are kept)."""
    path = _location(settings_file, app_dir)
    extra = unknown_keys(path)  # kept whenever the file is JSON, even with an invalid known value
    fresh = EngineSettings(extra=extra)
    write_settings(path, fresh)
    if app_context().json:
        emit_json(_report(path, fresh))
        return
    info(f"settings reset to the defaults ({path})")
