"""`install`, `uninstall`, `rollback`, `history`, `download`, `cache`: the safe install pipeline's commands.

Thin: parse options → decide what to install (resolver) → run the transaction (installer) → render.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vox1_setup.cli import AppContext
from vox1_setup.commands._common import (
    app_context,
    emit_json,
    env_file_option,
    manifest_option,
    output_options,
    python_option,
    warn,
)
from vox1_setup.errors import AbortedError, BadInputError, ExitCode, NoWheelError, VoxError
from vox1_setup.paths import Paths

INSTALL_SCHEMA = "vox1-install/1"
UNINSTALL_SCHEMA = "vox1-uninstall/1"
ROLLBACK_SCHEMA = "vox1-rollback/1"
HISTORY_SCHEMA = "vox1-history/1"
DOWNLOAD_SCHEMA = "vox1-download/1"
CACHE_SCHEMA = "vox1-cache-list/1"
CACHE_CLEAR_SCHEMA = "vox1-cache-clear/1"

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:  # typing only; keeps the CLI start fast
    from vox1_setup.environment import Environment
    from vox1_setup.installer import InstallOptions, Outcome, WheelPlan
    from vox1_setup.manifest.model import WheelEntry


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, "") or default)
    except ValueError:
        return default


def _install_options(app: AppContext, *, allow_insecure_localhost: bool, offline: bool,
                     wheelhouse: Path | None) -> InstallOptions:
    from vox1_setup.download import RetryPolicy, Timeouts
    from vox1_setup.installer import InstallOptions

    # Env knobs for slow links and for the test suite (tiny back-off): documented in docs/install.md.
    retry = RetryPolicy(attempts=int(_float_env("VOX1_DOWNLOAD_RETRIES", 5)),
                        backoff=_float_env("VOX1_DOWNLOAD_BACKOFF", 0.5))
    timeouts = Timeouts(connect=_float_env("VOX1_CONNECT_TIMEOUT", 15.0), read=_float_env("VOX1_READ_TIMEOUT", 60.0))
    progress = not app.quiet and not app.json and sys.stderr.isatty()
    return InstallOptions(allow_insecure_localhost=allow_insecure_localhost, offline=offline,
                          wheelhouse=wheelhouse, progress=progress, retry=retry, timeouts=timeouts)


def _note(app: AppContext) -> Callable[[str], None]:
    """Progress notes: stderr (stdout stays for the result and for --json). First-use checksums always show."""
    def note(message: str) -> None:
        if app.quiet and "checksum recorded" not in message:
            return
        click.echo(message, err=True)

    return note


def _detail(app: AppContext) -> Callable[[str], None]:
    """Notes only -v shows (stderr)."""
    def detail(message: str) -> None:
        if app.verbose and not app.quiet:
            click.echo(message, err=True)

    return detail


def _journal_python_option(help_text: str) -> Callable[[F], F]:
    """`--python` of the journal commands: unlike elsewhere, leaving it out means any target, not this one."""
    return click.option("--python", "python", envvar="VOX1_PYTHON", default=None, metavar="PATH",
                        help=f"{help_text} Env: VOX1_PYTHON.")


@contextmanager
def _json_failure(app: AppContext, schema: str) -> Iterator[None]:
    """With --json, a failure still prints a document (then the error goes to stderr with its exit code)."""
    try:
        yield
    except VoxError as exc:
        if app.json:
            emit_json({"schema": schema, "status": "failed", "error": {
                "message": exc.message, "hint": exc.hint, "exit_code": int(exc.exit_code)}})
        raise
    except KeyboardInterrupt:
        if app.json:
            emit_json({"schema": schema, "status": "failed", "error": {
                "message": "interrupted", "hint": None, "exit_code": int(ExitCode.ABORTED)}})
        raise


def _confirm(app: AppContext, question: str, yes: bool) -> None:
    """Ask only on an interactive terminal; scripts (piped, --json) proceed as pip does. --yes never asks."""
    if yes or app.json or not app.interactive:
        return
    if not click.confirm(question, default=True):
        raise AbortedError("cancelled; nothing was changed", "pass --yes to skip the question")


def _target_python(python: str | None) -> str:
    from vox1_setup.probe.interpreter import resolve_target

    return resolve_target(python)


# --------------------------------------------------------------------------------------------------------------
# Choosing the wheel


def _load_env(python: str, env_file: Path | None, paths: Paths) -> Environment:
    if env_file is not None:
        from vox1_setup.environment import load_environment_file

        return load_environment_file(env_file)
    from vox1_setup.probe import detect_environment

    return detect_environment(python, paths=paths)


def _is_url(text: str) -> bool:
    return "://" in text and not (len(text) > 1 and text[1] == ":")


def choose_wheel(env: Environment, *, manifest: str | None, spec: str | None, wheel: str | None,
                 sha256: str | None, force: bool, paths: Paths) -> tuple[WheelEntry, list[str]]:
    """The entry to install and warnings to show. Raises NoWheelError with the resolver's explanation."""
    from vox1_setup.manifest import WheelEntry, active_manifest
    from vox1_setup.resolver import ResolveOptions, resolve, resolve_wheel_file

    warnings: list[str] = []
    sha256 = _checked_sha256(sha256)
    if wheel is None:
        if force:
            raise BadInputError("--force applies to --wheel only", "give the wheel to install with --wheel")
        if sha256:
            raise BadInputError("--sha256 pins a --wheel; the manifest pins its own wheels",
                                "give the wheel with --wheel PATH_OR_URL, or drop --sha256")
        result = resolve(env, active_manifest(manifest, paths), ResolveOptions(flash_attn_spec=spec))
        warnings.extend(result.warnings)
        if result.selected is None:
            advice = "\n  ".join(result.advice)
            raise NoWheelError(f"no prebuilt flash-attn wheel fits {result.target}: {result.why}"
                               + (f"\n  {advice}" if advice else ""),
                               "`vox1-setup resolve --explain` shows why each wheel was rejected")
        return result.selected, warnings
    name, source = _wheel_source(wheel)
    entry = WheelEntry.from_filename(name, url=source)
    known = [e for e in active_manifest(manifest, paths).by_filename(entry.filename) if e.sha256] if not sha256 \
        else []
    from dataclasses import replace

    entry = replace(entry, url=source, sha256=sha256 or (known[0].sha256 if known else None))
    verdict = resolve_wheel_file(env, entry)
    if not verdict.accepted:
        reasons = "; ".join(r.message for r in verdict.reasons)
        if not force:
            raise NoWheelError(f"{entry.filename} does not fit {env.os}/{env.machine}: {reasons}",
                               "pick a matching wheel (`vox1-setup resolve`), or --force to install it anyway "
                               "(it will still be verified and rolled back if it fails)")
        warnings.append(f"--force: installing {entry.filename} although it does not fit this machine: {reasons}")
    return entry, warnings


def _checked_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    sha256 = sha256.lower().removeprefix("sha256:")
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise BadInputError(f"--sha256 {sha256!r} is not a sha256 hex digest (64 hex characters)",
                            "compute it with `sha256sum FILE` (Windows: `certutil -hashfile FILE SHA256`)")
    return sha256


def _wheel_source(wheel: str) -> tuple[str, str]:
    """(file name, source) of --wheel: a URL stays as it is, a path becomes absolute."""
    if _is_url(wheel):
        from vox1_setup.filenames import filename_from_url

        return filename_from_url(wheel), wheel
    return wheel.replace("\\", "/").rsplit("/", 1)[-1], str(Path(wheel).expanduser().absolute())


def forced_plan(wheel: str, sha256: str | None, refusal: VoxError) -> tuple[WheelPlan, list[str]]:
    """--force with a wheel the catalog rules cannot read (a local build named `flash_attn-2.8.3-cp311-…whl`
    has no +cu/torch label): install it on the strength of its wheel name alone, checksum and verification
    still apply. Re-raises `refusal` when the name is not even a flash_attn wheel."""
    from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

    from vox1_setup.installer import WheelPlan

    name, source = _wheel_source(wheel)
    try:
        dist, version, _build, _tags = parse_wheel_filename(name)
    except InvalidWheelFilename:
        raise refusal from None
    if canonicalize_name(dist) != "flash-attn":
        raise refusal
    plan = WheelPlan(source=source, filename=name, sha256=_checked_sha256(sha256), base_version=version.base_version)
    return plan, [f"--force: installing {name} although {refusal.message}"]


def _plan(entry: WheelEntry) -> WheelPlan:
    from vox1_setup.installer import WheelPlan

    return WheelPlan(source=entry.url, filename=entry.filename, sha256=entry.sha256,
                     base_version=entry.base_version, size=entry.size)


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n / 1024:.1f} KiB"


def plan_lines(plan: WheelPlan, python: str, current: str | bool | None, cached: bool) -> list[str]:
    """`current`: the installed version, None when absent, False when not looked up."""
    local = not _is_url(plan.source) or plan.source.startswith("file:")
    fetch = "from the cache" if cached else f"local file {plan.source}" if local else \
        f"download {_size(plan.size)} from {plan.source}"
    checksum = f"sha256 {plan.sha256[:16]}…" if plan.sha256 else "no pinned checksum (recorded on first use)"
    replaces = f" (replaces flash-attn {current})" if current else "" if current is False else \
        " (flash-attn is not installed now)"
    return [f"plan: flash-attn {plan.base_version} ({plan.filename})",
            f"  wheel:   {fetch}; {checksum}",
            f"  target:  {python}{replaces}",
            "  then:    verify in a fresh process; roll back automatically on any failure"]


# --------------------------------------------------------------------------------------------------------------
# install


@click.command("install")
@python_option
@env_file_option
@manifest_option
@click.option("--flash-attn", "spec", default=None, metavar="SPEC", help="Wanted versions, e.g. '==2.8.3'.")
@click.option("--wheel", default=None, metavar="PATH_OR_URL",
              help="Install this wheel file or URL (still checked for compatibility and verified).")
@click.option("--sha256", default=None, metavar="HEX", help="Pin the checksum of --wheel.")
@click.option("--wheelhouse", type=click.Path(file_okay=False, path_type=Path), default=None, metavar="DIR",
              help="Take the wheel from this folder (made by `vox1-setup download`) when it is there.")
@click.option("--offline", is_flag=True, default=False, help="Never download: cache or --wheelhouse only.")
@click.option("--force", is_flag=True, default=False,
              help="Install --wheel even if it does not fit this machine (the checksum is still checked).")
@click.option("--allow-insecure-localhost", is_flag=True, default=False,
              help="Accept http:// URLs on loopback hosts (test servers, lab mirrors).")
@click.option("--dry-run", is_flag=True, default=False, help="Show the plan and stop.")
@click.option("-y", "--yes", is_flag=True, default=False, help="Do not ask for confirmation.")
@output_options
def install(*, python: str | None, env_file: Path | None, manifest: str | None, spec: str | None, wheel: str | None,
            sha256: str | None, wheelhouse: Path | None, offline: bool, force: bool, allow_insecure_localhost: bool,
            dry_run: bool, yes: bool) -> None:
    """Install the right FlashAttention 2 wheel into the target Python, verify it, or leave everything as it was.

    With --env FILE, the wheel is chosen for the machine described in FILE and installed into --python (image
    builds on a machine without the GPU; the functional check then reports "not run").

    \b
    Examples:
      vox1-setup install
      vox1-setup install --python C:\\VOX-1\\system_python\\python.exe --yes
      vox1-setup install --dry-run --json
      vox1-setup install --wheel flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl
      vox1-setup install --wheelhouse D:\\wheels --offline
    """
    app = app_context()
    with _json_failure(app, INSTALL_SCHEMA):
        from vox1_setup.installer import install as run_install
        from vox1_setup.journal import Journal
        from vox1_setup.verify import read_state

        target = _target_python(python)
        env = _load_env(target, env_file, app.paths)
        try:
            entry, warnings = choose_wheel(env, manifest=manifest, spec=spec, wheel=wheel, sha256=sha256,
                                           force=force, paths=app.paths)
            plan = _plan(entry)
        except BadInputError as refusal:
            if not (force and wheel):
                raise
            plan, warnings = forced_plan(wheel, sha256, refusal)
        if env_file is not None:
            _check_target_matches(target, env, env_file, plan.filename)  # even with --force: pip would refuse
        for line in warnings:
            warn(line)
        options = _install_options(app, allow_insecure_localhost=allow_insecure_localhost, offline=offline,
                                   wheelhouse=wheelhouse)
        from vox1_setup.download import source_kind

        source_kind(plan.source, allow_insecure_localhost=allow_insecure_localhost)  # refuse early, not mid-way
        # Reading the target's state costs a subprocess: only when the plan is shown and waited on.
        show_current = dry_run or (app.interactive and not yes and not app.json)
        state = read_state(target) if show_current else None
        current = state.flash_attn.version if state and state.flash_attn else None
        cached = plan.sha256 is not None and _in_cache(app.paths, plan.sha256)
        pending = [e.id for e in Journal(app.paths).interrupted(os.path.abspath(target))]  # noqa: PTH100
        if dry_run:
            if app.json:
                emit_json({"schema": INSTALL_SCHEMA, "status": "dry-run", "python": target, "plan": plan.to_dict(),
                           "before_version": current, "cached": cached, "would_recover": pending,
                           "warnings": warnings})
            else:
                for line in plan_lines(plan, target, current, cached):
                    click.echo(line)
                for entry_id in pending:
                    click.echo(f"  first:   roll back the interrupted change {entry_id}")
                click.echo("dry run: nothing was changed")
            return
        if not app.quiet and not app.json:
            for line in plan_lines(plan, target, current if show_current else False, cached):
                click.echo(line)
        _confirm(app, "Proceed?", yes)
        outcome = run_install(target, plan, paths=app.paths, options=options, note=_note(app), detail=_detail(app))
        _render_outcome(app, outcome, INSTALL_SCHEMA, "installed", warnings)


def _check_target_matches(target: str, env: Environment, env_file: Path, filename: str) -> None:
    """--env describes some machine; --python is the interpreter that gets the wheel. Probe the target (no
    torch: one quick stdlib-only subprocess) and refuse a wheel whose tags it cannot install."""
    from vox1_setup.probe import probe_interpreter

    facts = probe_interpreter(target, torch=False)
    problem = target_mismatch(env, (facts.os, facts.machine, facts.python.version), facts.python.tags or (),
                              filename)
    if problem is not None:
        raise BadInputError(f"{filename} cannot be installed into {target}: {problem} (machine file {env_file})",
                            f"describe this target: `vox1-setup detect --json -o env.json --python \"{target}\"`, "
                            "or drop --env to detect it here; nothing was changed")


def target_mismatch(env: Environment, target: tuple[str, str, str], target_tags: tuple[str, ...] | list[str],
                    filename: str) -> str | None:
    """Why the wheel `filename` (chosen for `env`) does not fit a target with these (os, machine, Python
    version) facts and tags, naming the machine-file facts that disagree; None when it fits."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        wheel_tags = {str(t) for t in parse_wheel_filename(filename)[3]}
    except InvalidWheelFilename:
        return None  # not a wheel name: the choice of wheel has already said so
    if wheel_tags & set(target_tags):
        return None
    os_name, machine, version = target
    differ = []
    if env.os != os_name:
        differ.append(f"os {env.os} (the target: {os_name})")
    if env.machine != machine:
        differ.append(f"machine {env.machine} (the target: {machine})")
    if env.python.major_minor != tuple(int(p) for p in version.split(".")[:2]):
        differ.append(f"Python {env.python.version} (the target: {version})")
    why = f"the wheel's tags ({', '.join(sorted(wheel_tags))}) are not among the target's"
    if differ:
        return f"{why}; the machine file says {', '.join(differ)}"
    return f"{why} (Python {version} on {os_name}/{machine})"


def _in_cache(paths: Paths, sha: str) -> bool:
    from vox1_setup.cache import WheelCache

    return WheelCache(paths).lookup(sha, check=False) is not None


def _render_outcome(app: AppContext, outcome: Outcome, schema: str, status: str, warnings: list[str]) -> None:
    if app.json:
        emit_json({"schema": schema, "status": status, **outcome.to_dict(), "warnings": warnings})
        return
    v = outcome.verify
    if outcome.action == "install":
        click.echo(f"installed flash-attn {outcome.after_version} into {outcome.python}"
                   + (f" (was {outcome.before_version})" if outcome.before_version else ""))
        if v is not None and not app.quiet:
            click.echo("  verified: import flash_attn ok, flash_attn_2_cuda ok, version ok")
            click.echo(f"  functional check: {v.functional_summary()}")
    elif outcome.action == "uninstall":
        click.echo(f"removed flash-attn {outcome.before_version} from {outcome.python}; VOX-1 now uses sdpa "
                   f"(undo: vox1-setup rollback --to {outcome.entry_id})")
    else:
        now = f"flash-attn {outcome.after_version}" if outcome.after_version else "no flash-attn"
        click.echo(f"restored {outcome.python}: {now} (verified by file hashes)")
    if not app.quiet:
        click.echo(f"  journal entry: {outcome.entry_id}")


# --------------------------------------------------------------------------------------------------------------
# uninstall, rollback, history


@click.command("uninstall")
@python_option
@click.option("-y", "--yes", is_flag=True, default=False, help="Do not ask for confirmation.")
@output_options
def uninstall(python: str | None, yes: bool) -> None:
    """Remove flash-attn from the target Python (journaled: `vox1-setup rollback` brings it back).

    VOX-1 then runs attention on sdpa by itself.
    """
    app = app_context()
    with _json_failure(app, UNINSTALL_SCHEMA):
        from vox1_setup.installer import uninstall as run_uninstall
        from vox1_setup.verify import read_state

        target = _target_python(python)
        state = read_state(target)
        if state.flash_attn is not None:
            _confirm(app, f"Remove flash-attn {state.flash_attn.version} from {target}?", yes)
        outcome = run_uninstall(target, paths=app.paths, note=_note(app))
        if outcome is None:
            if app.json:
                emit_json({"schema": UNINSTALL_SCHEMA, "status": "not-installed", "python": target})
            else:
                click.echo(f"flash-attn is not installed in {target}; nothing to do")
            return
        _render_outcome(app, outcome, UNINSTALL_SCHEMA, "removed", [])


@click.command("rollback")
@_journal_python_option("Act on this target interpreter only (default: the newest change of ANY target, after "
                        "repairing an interrupted change of any target).")
@click.option("--to", "to", default=None, metavar="ENTRY",
              help="Undo this journal entry (see `vox1-setup history`) instead of the last change.")
@click.option("-y", "--yes", is_flag=True, default=False, help="Do not ask for confirmation.")
@output_options
def rollback(python: str | None, to: str | None, yes: bool) -> None:
    """Restore the state before the last change (or before --to ENTRY); repairs an interrupted install first.

    \b
    Examples:
      vox1-setup rollback
      vox1-setup rollback --to 20261128T030512.123456-install-ab12cd
    """
    app = app_context()
    with _json_failure(app, ROLLBACK_SCHEMA):
        from vox1_setup.installer import rollback as run_rollback
        from vox1_setup.installer import target_id
        from vox1_setup.journal import Journal

        journal = Journal(app.paths)
        pending = journal.interrupted(target_id(python) if python else None)
        if to is not None and pending:
            raise VoxError(f"an interrupted change ({pending[0].id}) must be repaired first",
                           "run `vox1-setup rollback` without --to, then again with --to",
                           exit_code=ExitCode.INTERRUPTED_STATE)
        if pending:
            question = f"Roll back the interrupted {pending[0].doc.get('action')} {pending[0].id}?"
        else:
            question = f"Undo {to or 'the last change'}?"
        _confirm(app, question, yes)
        outcome = run_rollback(python, to=to, paths=app.paths, note=_note(app))
        if outcome.action == "recover":
            if app.json:
                emit_json({"schema": ROLLBACK_SCHEMA, "status": "recovered", **outcome.to_dict()})
            else:
                now = f"flash-attn {outcome.after_version}" if outcome.after_version else "no flash-attn"
                click.echo(f"rolled back the interrupted change {', '.join(outcome.recovered)}: {outcome.python} "
                           f"has {now} again, as before it (verified by file hashes)")
            return
        _render_outcome(app, outcome, ROLLBACK_SCHEMA, "restored", [])


@click.command("history")
@_journal_python_option("Show only this target interpreter's entries (default: the entries of every target).")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Entries to show.")
@output_options
def history(python: str | None, limit: int) -> None:
    """The install journal, newest first: when, what, from which version to which, and the outcome."""
    app = app_context()
    with _json_failure(app, HISTORY_SCHEMA):
        _history(app, python, limit)


def _history(app: AppContext, python: str | None, limit: int) -> None:
    from vox1_setup.journal import EntrySummary, Journal, same_target

    journal = Journal(app.paths)
    wanted = os.path.abspath(_target_python(python)) if python else None  # noqa: PTH100
    rows = []
    for entry in journal.entries():
        if wanted and not same_target(entry.doc.get("python"), wanted):
            continue
        rows.append(EntrySummary.from_doc(entry.doc, journal.is_interrupted(entry)))
        if len(rows) >= limit:
            break
    if app.json:
        emit_json({"schema": HISTORY_SCHEMA, "journal": str(journal.root), "entries": [r.to_dict() for r in rows]})
        return
    if not rows:
        click.echo("the journal is empty: nothing was installed with vox1-setup yet")
        return
    for r in rows:
        d = r.to_dict()
        change = f"{r.from_version or '-'} -> {r.to_version or '-'}"
        click.echo(f"{r.created}  {r.action:<9} {change:<22} {d['status']:<15} {r.id}")
        if app.verbose:
            click.echo(f"    {r.python}")
            for line in (r.message or "").splitlines():  # the whole message: the cause is on the later lines
                click.echo(f"    {line}")


# --------------------------------------------------------------------------------------------------------------
# download, cache


@click.command("download")
@python_option
@env_file_option
@manifest_option
@click.option("--flash-attn", "spec", default=None, metavar="SPEC", help="Wanted versions, e.g. '==2.8.3'.")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), required=True, metavar="DIR",
              help="Wheelhouse folder to put the wheel (and its .sha256 file) in.")
@click.option("--allow-insecure-localhost", is_flag=True, default=False,
              help="Accept http:// URLs on loopback hosts (test servers, lab mirrors).")
@output_options
def download(*, python: str | None, env_file: Path | None, manifest: str | None, spec: str | None, dest: Path,
             allow_insecure_localhost: bool) -> None:
    """Fetch and check the wheel for a machine into a wheelhouse, for offline or fleet installs.

    \b
    Examples:
      vox1-setup download --env env.json --dest wheels/
      (on the target:) vox1-setup install --wheelhouse wheels/ --offline
    """
    app = app_context()
    with _json_failure(app, DOWNLOAD_SCHEMA):
        from vox1_setup.installer import fetch_wheel

        if python and env_file:
            ctx = click.get_current_context()
            typed = {n for n in ("python", "env_file")
                     if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE}
            if len(typed) == 2:
                raise BadInputError("--python and --env are mutually exclusive",
                                    "--env FILE describes the machine the wheel is for; --python detects it here")
            # One of them came from VOX1_PYTHON / VOX1_ENV_FILE: the one typed wins (else the machine file).
            if typed == {"python"}:
                env_file = None
            else:
                python = None
        env = _load_env(_target_python(python), env_file, app.paths)
        entry, warnings = choose_wheel(env, manifest=manifest, spec=spec, wheel=None, sha256=None, force=False,
                                       paths=app.paths)
        for line in warnings:
            warn(line)
        plan = _plan(entry)
        options = _install_options(app, allow_insecure_localhost=allow_insecure_localhost, offline=False,
                                   wheelhouse=None)
        fetched = fetch_wheel(plan, app.paths, options, _note(app), _detail(app))
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / plan.filename
        tmp = dest / f".{plan.filename}.tmp"
        shutil.copyfile(fetched.path, tmp)
        tmp.replace(target)
        (dest / f"{plan.filename}.sha256").write_text(f"{fetched.sha256}  {plan.filename}\n", encoding="utf-8")
        if app.json:
            emit_json({"schema": DOWNLOAD_SCHEMA, "status": "downloaded", "path": str(target),
                       "sha256": fetched.sha256, "trust": fetched.trust, "origin": fetched.origin,
                       "entry": dict(entry.to_dict()), "warnings": warnings})
            return
        click.echo(f"{target}\n  sha256 {fetched.sha256} ({fetched.trust}); install it on the target with:\n"
                   f"  vox1-setup install --wheelhouse \"{dest}\" --offline")


@click.group("cache", invoke_without_command=True)
@output_options
@click.pass_context
def cache(ctx: click.Context) -> None:
    """Downloaded wheels (content-addressed by sha256): `cache list` (default) or `cache clear`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(cache_list)


@cache.command("list")
@output_options
def cache_list() -> None:
    """List cached wheels: file, size, sha256, and whether the hash was pinned or recorded on first download."""
    from vox1_setup.cache import WheelCache

    app = app_context()
    wc = WheelCache(app.paths)
    entries = wc.entries()
    if app.json:
        emit_json({"schema": CACHE_SCHEMA, "dir": str(wc.root), "entries": [e.to_dict() for e in entries],
                   "total_bytes": sum(e.size for e in entries)})
        return
    if not entries:
        click.echo(f"the wheel cache is empty ({wc.root})")
        return
    for e in entries:
        click.echo(f"{e.filename}  {_size(e.size)}  sha256 {e.sha256[:16]}…  {e.trust}  {e.added}")
    click.echo(f"{len(entries)} wheels, {_size(sum(e.size for e in entries))} in {wc.root}")


@cache.command("clear")
@click.option("-y", "--yes", is_flag=True, default=False, help="Do not ask for confirmation.")
@output_options
def cache_clear(yes: bool) -> None:
    """Delete every cached wheel and partial download (rollbacks then use their own stashes)."""
    from vox1_setup.cache import WheelCache

    app = app_context()
    wc = WheelCache(app.paths)
    with _json_failure(app, CACHE_CLEAR_SCHEMA):
        if not wc.root.is_dir():
            count, size = 0, 0
        else:
            _confirm(app, f"Delete the wheel cache in {wc.root}?", yes)
            count, size = wc.clear()
    if app.json:
        emit_json({"schema": CACHE_CLEAR_SCHEMA, "status": "cleared", "removed": count, "bytes": size})
        return
    click.echo(f"removed {count} cached wheels ({_size(size)})")

