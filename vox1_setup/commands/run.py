"""`vox1-setup run [--python PATH] [-- ARGS]`: hand VOX-1 over to its engine in the target interpreter.

Checks the journal (an interrupted install is reported, VOX-1 starts anyway: the engine's `auto` attention
falls back to sdpa when flash-attn is broken), validates the settings, then runs
`TARGET -m engine --settings FILE [ARGS]` on this console and exits with the engine's exit code.
"""

from __future__ import annotations

from pathlib import Path

import click

from vox1_setup.commands._common import app_context, emit_json, output_options, python_option, warn
from vox1_setup.errors import BadInputError
from vox1_setup.settings import read_settings, settings_location_options, settings_path

RUN_SCHEMA = "vox1-run/1"

# Asks the target whether it can run the engine, without importing it (no torch import here).
_ENGINE_CHECK = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('engine') else 3)"


def engine_installed(python: str) -> bool:
    """Whether the target can run `-m engine` (asked without importing it). Raises BadInputError when the
    target does not start at all."""
    from vox1_setup import subproc

    check = subproc.run([python, "-c", _ENGINE_CHECK], timeout=60.0)
    if check.returncode == 3:
        return False
    if not check.ok:
        raise BadInputError(f"{python} did not start: {(check.stderr or check.stdout).strip()[-300:]}",
                            "check the path given with --python (or VOX1_PYTHON)")
    return True


def engine_command(python: str, settings_file: Path, args: tuple[str, ...]) -> list[str]:
    return [python, "-m", "engine", "--settings", str(settings_file), *args]


def _interrupted_for(python: str) -> list[str]:
    try:
        from vox1_setup.journal import Journal
    except ImportError:
        return []
    from vox1_setup.target import same_target

    return [e.id for e in Journal(app_context().paths).interrupted()
            if isinstance(e.doc.get("python"), str) and same_target(e.doc["python"], python)]


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@python_option
@settings_location_options
@click.option("--dry-run", is_flag=True, default=False, help="Print the engine command instead of running it.")
@output_options
@click.argument("engine_args", nargs=-1, type=click.UNPROCESSED)
def run(*, python: str | None, settings_file: Path | None, app_dir: Path | None, dry_run: bool,
        engine_args: tuple[str, ...]) -> int:
    """Start VOX-1: `TARGET -m engine --settings FILE [ARGS]`. Arguments after `--` go to the engine.

    Exits with the engine's exit code.
    """
    from vox1_setup import subproc
    from vox1_setup.target import target_python

    app = app_context()
    target = target_python(python)
    path = settings_path(app.paths, settings_file, app_dir)
    settings = read_settings(path)  # invalid settings stop here, with the key and the allowed values
    for entry_id in _interrupted_for(target):
        warn(f"an install into this Python was interrupted (journal entry {entry_id}); starting VOX-1 anyway. "
             "Run `vox1-setup rollback` afterwards to restore a known state.")
    args = engine_args[1:] if engine_args[:1] == ("--",) else engine_args  # only the separator itself
    argv = engine_command(target, path, args)
    if dry_run:
        if app.json:
            emit_json({"schema": RUN_SCHEMA, "argv": argv, "settings_file": str(path),
                       "settings": settings.to_dict()})
        else:
            click.echo(subproc_list2cmdline(argv))
        return 0
    if not engine_installed(target):
        raise BadInputError(f"the VOX-1 engine is not installed in {target}",
                            "point --python at VOX-1's own Python (system_python), or install vox1-setup "
                            "with its engine into it")
    if not settings.model_path:  # the engine cannot start without a model: say so before it starts
        where = "" if path == settings_path(app.paths) else f' --settings-file "{path}"'
        raise BadInputError(f"no model_path in the settings ({path}): VOX-1 needs the model folder",
                            f'set it with `vox1-setup settings set model_path "<folder>"{where}`')
    if not app.quiet and not app.json:
        click.echo(f"starting VOX-1: attention {settings.attention_implementation.value}, batch "
                   f"{settings.batch_size} (settings: {path})", err=True)
    return subproc.run_attached(argv)


def subproc_list2cmdline(argv: list[str]) -> str:
    """The command as the user would type it on this OS (quoted where needed)."""
    import os
    import shlex
    import subprocess

    return subprocess.list2cmdline(argv) if os.name == "nt" else shlex.join(argv)
