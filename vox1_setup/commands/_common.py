"""Options and helpers shared by the command modules."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from vox1_setup.cli import AppContext

F = TypeVar("F", bound=Callable[..., Any])


def _merge_flag(attr: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        app = ctx.find_object(AppContext)
        if app is not None and value:
            if attr == "verbose":
                app.verbose = max(app.verbose, int(value))
            else:
                setattr(app, attr, True)
        return value

    return callback


def output_options(func: F) -> F:
    """`--json`, `-v/--verbose`, `-q/--quiet` accepted after the command name too (pip-style)."""
    func = click.option("--json", "_json", is_flag=True, expose_value=False, callback=_merge_flag("json"),
                        help="Print a machine-readable JSON report (versioned schema).")(func)
    func = click.option("-v", "--verbose", "_verbose", count=True, expose_value=False,
                        callback=_merge_flag("verbose"), help="More detail.")(func)
    return click.option("-q", "--quiet", "_quiet", is_flag=True, expose_value=False,
                        callback=_merge_flag("quiet"), help="Only errors and the final result.")(func)


def python_option(func: F) -> F:
    """`--python PATH`: the target interpreter (VOX-1's system_python). Env: VOX1_PYTHON."""
    return click.option(
        "--python", "python", envvar="VOX1_PYTHON", default=None, metavar="PATH",
        help="Target Python interpreter (default: the one running vox1-setup). Env: VOX1_PYTHON.",
    )(func)


def env_file_option(func: F) -> F:
    """`--env FILE`: machine facts from a `vox1-env/1` document instead of detecting them here."""
    return click.option(
        "--env", "env_file", envvar="VOX1_ENV_FILE", default=None, metavar="FILE",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Use the machine facts in this vox1-env/1 file (from `detect --json`). Env: VOX1_ENV_FILE.",
    )(func)


def manifest_option(func: F) -> F:
    return click.option(
        "--manifest", "manifest", envvar="VOX1_MANIFEST", default=None, metavar="PATH_OR_URL",
        help="Wheel manifest to use instead of the bundled wheels.json. Env: VOX1_MANIFEST.",
    )(func)


def app_context() -> AppContext:
    ctx = click.get_current_context()
    app = ctx.find_object(AppContext)
    if app is None:  # command invoked without the group (tests calling a command directly)
        app = AppContext()
        ctx.obj = app
    return app


def emit_json(doc: Any) -> None:
    """JSON reports go to stdout, nothing else does when --json is on. ASCII-escaped, so a report redirected
    to a file through a legacy Windows code page keeps every character of a non-ASCII path."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def info(message: str, **style: Any) -> None:
    """Human text to stdout unless --quiet or --json."""
    app = app_context()
    if app.quiet or app.json:
        return
    click.secho(message, **style)


def warn(message: str) -> None:
    """Warnings go to stderr (so --json stdout stays parseable), even with --quiet."""
    click.secho(f"warning: {message}", err=True, fg="yellow")
