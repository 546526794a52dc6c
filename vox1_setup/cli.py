"""The `vox1-setup` command line: global flags, lazy command loading, and the one error handler.

Commands live in `vox1_setup/commands/<name>.py` and are imported only when invoked, so `--help` and
every command start fast. Each command module stays thin: parse options → call the logic → render.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

import click

from vox1_setup import __version__
from vox1_setup.errors import ExitCode, VoxError
from vox1_setup.paths import Paths, default_paths

# command name -> "module:attribute"; the order is the order of `--help`.
COMMANDS: dict[str, str] = {
    "detect": "vox1_setup.commands.detect:detect",
    "resolve": "vox1_setup.commands.resolve:resolve",
    "manifest": "vox1_setup.commands.manifest:manifest",
    "install": "vox1_setup.commands.install:install",
    "uninstall": "vox1_setup.commands.install:uninstall",
    "rollback": "vox1_setup.commands.install:rollback",
    "history": "vox1_setup.commands.install:history",
    "download": "vox1_setup.commands.install:download",
    "cache": "vox1_setup.commands.install:cache",
    "doctor": "vox1_setup.commands.doctor:doctor",
    "explain-error": "vox1_setup.commands.explain:explain_error",
    "wizard": "vox1_setup.commands.wizard:wizard",
    "settings": "vox1_setup.commands.settings:settings",
    "run": "vox1_setup.commands.run:run",
    "bench": "vox1_setup.commands.bench:bench",
}


@dataclass
class AppContext:
    """What every command gets: output mode and where files live."""

    json: bool = False
    verbose: int = 0
    quiet: bool = False
    paths: Paths = field(default_factory=default_paths)

    @property
    def interactive(self) -> bool:
        return sys.stdin.isatty() and sys.stdout.isatty()


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if self._available(name)]

    @staticmethod
    def _available(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        try:
            from importlib.util import find_spec

            return find_spec(module) is not None
        except ModuleNotFoundError:
            return False

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None or not self._available(cmd_name):
            return None
        module_name, attr = target.split(":")
        command = getattr(import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "VOX1"})
@click.option("--json", "as_json", is_flag=True, default=False, help="Print a machine-readable JSON report.")
@click.option("-v", "--verbose", count=True, help="More detail; -vv for debug logs and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Only errors and the final result.")
@click.version_option(__version__, prog_name="vox1-setup")
@click.pass_context
def cli(ctx: click.Context, as_json: bool, verbose: int, quiet: bool) -> None:
    """vox1-setup: the right FlashAttention 2 for VOX-1, installed safely, verified, explained.

    Global flags go before or after the command: `vox1-setup --json detect` = `vox1-setup detect --json`.
    """
    app = AppContext(json=as_json or _env_flag("VOX1_JSON"), verbose=verbose or int(_env_flag("VOX1_VERBOSE")),
                     quiet=quiet or _env_flag("VOX1_QUIET"))
    ctx.obj = app
    level = logging.DEBUG if app.verbose >= 2 else logging.INFO if app.verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if ctx.invoked_subcommand not in (None, "rollback", "history"):
        _warn_interrupted(app)


def _warn_interrupted(app: AppContext) -> None:
    """Every command tells the user about an install that was killed half-way (journal in progress)."""
    try:
        from vox1_setup.journal import interrupted_notice
    except ImportError:
        return
    notice = interrupted_notice(app.paths)
    if notice:
        click.secho(notice, err=True, fg="yellow")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map every outcome to a documented exit code."""
    _tolerant_output()
    sys.exit(run_cli(argv))


def _tolerant_output() -> None:
    """Output redirected on Windows uses the legacy code page (cp1252, cp850): a '≤' or '…' in a message must
    be replaced there, not end the command with a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and encoding != "utf8":
            with contextlib.suppress(ValueError, OSError):
                reconfigure(errors="replace")


ERROR_SCHEMA = "vox1-error/1"


class _StdoutWatch:
    """Wraps stdout for one command, to know whether it already printed its own (failure) document."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.written = False

    def write(self, text: str) -> int:
        if text:
            self.written = True
        return int(self._inner.write(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _json_requested(args: list[str]) -> bool:
    return "--json" in args or _env_flag("VOX1_JSON")


def _failure_document(args: list[str], message: str, hint: str | None, code: int) -> None:
    """With --json, every failure still leaves one parseable document on stdout."""
    command = next((a for a in args if a in COMMANDS), None)
    doc = {"schema": ERROR_SCHEMA, "status": "failed", "command": command,
           "error": {"message": message, "hint": hint, "exit_code": code}}
    import json

    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


def run_cli(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not _json_requested(args):
        return _run_cli(args)
    watch = _StdoutWatch(sys.stdout)
    sys.stdout = watch
    try:
        code = _run_cli(args, watch)
    finally:
        if sys.stdout is watch:
            sys.stdout = watch._inner
    return code


def _run_cli(args: list[str], watch: _StdoutWatch | None = None) -> int:
    verbose = any(a in ("-v", "-vv", "--verbose") or a.startswith("-vv") for a in args) or _env_flag("VOX1_VERBOSE")

    def failed(message: str, hint: str | None, code: int) -> int:
        if watch is not None and not watch.written:
            _failure_document(args, message, hint, code)
        return code

    try:
        result: Any = cli.main(args=args, prog_name="vox1-setup", standalone_mode=False)
    except VoxError as exc:
        if verbose:
            import traceback

            traceback.print_exc()
        click.secho(f"error: {exc.message}", err=True, fg="red")
        if exc.hint:
            click.echo(f"hint: {exc.hint}", err=True)
        return failed(exc.message, exc.hint, int(exc.exit_code))
    except click.exceptions.Abort:
        click.echo("aborted.", err=True)
        return failed("aborted", None, int(ExitCode.ABORTED))
    except KeyboardInterrupt:
        click.echo("interrupted.", err=True)
        return failed("interrupted", None, int(ExitCode.ABORTED))
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        code = int(ExitCode.BAD_INPUT) if exc.exit_code == 2 else int(exc.exit_code)
        return failed(exc.format_message(), None, code)
    except Exception as exc:  # a bug: short message unless --verbose
        if verbose:
            import traceback

            traceback.print_exc()
        click.secho(f"internal error: {type(exc).__name__}: {exc}", err=True, fg="red")
        click.echo("hint: this is a bug in vox1-setup; rerun with --verbose and report the output", err=True)
        return failed(f"internal error: {type(exc).__name__}: {exc}",
                      "this is a bug in vox1-setup; rerun with --verbose and report the output", int(ExitCode.INTERNAL))
    return int(result) if isinstance(result, int) else int(ExitCode.OK)
