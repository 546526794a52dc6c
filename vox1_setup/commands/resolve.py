"""`vox1-setup resolve`: which flash-attn wheel fits this machine (or an env file), and why every other one does not."""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from json.encoder import encode_basestring_ascii
from pathlib import Path

import click

from vox1_setup.commands._common import (
    app_context,
    env_file_option,
    manifest_option,
    output_options,
    python_option,
    warn,
)
from vox1_setup.environment import Environment, load_environment_file
from vox1_setup.errors import BadInputError, ExitCode, NoWheelError
from vox1_setup.manifest import active_manifest
from vox1_setup.manifest.model import WheelEntry
from vox1_setup.paths import Paths
from vox1_setup.resolver import REASONS, Candidate, Reason, Resolution, ResolveOptions
from vox1_setup.resolver import resolve as resolve_wheels

SHOWN_ACCEPTED = 10
SHOWN_MESSAGES = 5
SHOWN_NEAR_MISSES = 3


def load_target(python: str | None, env_file: Path | None, paths: Paths) -> Environment:
    """The environment to decide for: a vox1-env/1 file, or the live target interpreter."""
    if python and env_file:
        raise BadInputError("--python and --env are mutually exclusive",
                            "use --env FILE for facts from another machine, --python PATH to detect them here")
    if env_file is not None:
        return load_environment_file(env_file)
    from vox1_setup.probe import detect_environment

    return detect_environment(python, paths=paths)


@click.command("resolve")
@python_option
@env_file_option
@manifest_option
@click.option("--flash-attn", "flash_attn_spec", default=None, metavar="SPEC",
              help="Wanted flash-attn versions, e.g. '2.8.3' (exactly), '2.7.*' or '>=2.7,<2.9'.")
@click.option("--gpu", "gpu_index", type=click.IntRange(min=0), default=None, metavar="INDEX",
              help="Decide for the GPU the engine will use (default: every GPU that can run FA2).")
@click.option("--no-derived", "no_derived", is_flag=True, default=False,
              help="Never pick an unconfirmed (derived-*) catalog row.")
@click.option("--explain", is_flag=True, default=False,
              help="List every accepted wheel and every rejected one grouped by reason (-v: every file name).")
@output_options
def resolve(*, python: str | None, env_file: Path | None, manifest: str | None, flash_attn_spec: str | None,
            gpu_index: int | None, no_derived: bool, explain: bool) -> int:
    """Pick the prebuilt FlashAttention 2 wheel that will work, or say precisely why none does.

    Exit 0 when a wheel was selected, 3 (NO_WHEEL) when none fits.

    \b
    Examples:
      vox1-setup resolve
      vox1-setup resolve --python C:\\VOX-1\\system_python\\python.exe --explain
      vox1-setup resolve --env env.json --json
      vox1-setup resolve --flash-attn '>=2.7,<2.8' --gpu 0
    """
    app = app_context()
    env = load_target(python, env_file, app.paths)
    wheels = active_manifest(manifest, app.paths)
    options = ResolveOptions(gpu_index=gpu_index, flash_attn_spec=flash_attn_spec, allow_derived=not no_derived)
    result = resolve_wheels(env, wheels, options)
    if app.json:
        emit_resolution(result)
        for line in result.warnings:
            warn(line)
        return int(ExitCode.OK if result.selected else ExitCode.NO_WHEEL)
    for line in result.warnings:
        warn(line)
    if not app.quiet:
        for line in render(result, explain=explain, verbose=app.verbose > 0):
            click.echo(line)
    if result.selected is None:
        # -q printed no advice: the error carries the first (most specific) line itself.
        first = "read the advice above" if not app.quiet else result.advice[0] if result.advice else ""
        raise NoWheelError(f"no prebuilt flash-attn wheel fits {result.target}",
                           f"{first}; `--explain` shows why each wheel was rejected" if first
                           else "`--explain` shows why each wheel was rejected")
    if app.quiet:
        click.echo(result.selected.url)
    return int(ExitCode.OK)


def emit_resolution(result: Resolution) -> None:
    sys.stdout.write(resolution_json(result))
    sys.stdout.flush()


def resolution_json(result: Resolution) -> str:
    """The vox1-resolution/1 document as text: indented like every report, but one line per candidate, so
    4,000 candidates stay easy to grep and fast to write. Equal to `json.dumps(result.to_dict())` once parsed;
    candidates are written by hand because the indenting encoder is pure Python, and a reason list shared by
    many candidates is encoded once."""
    head = json.dumps(result.to_dict(candidates=False), indent=2)
    if not result.candidates:
        return head + "\n"
    text = encode_basestring_ascii
    memo: dict[int, str] = {}  # by id: reasons and reason lists are shared objects, alive as long as `result`

    def reason(r: Reason) -> str:
        found = memo.get(id(r))
        if found is None:
            found = memo[id(r)] = f'{{"code": {text(r.code)}, "message": {text(r.message)}}}'
        return found

    def reasons(c: Candidate) -> str:
        found = memo.get(id(c.reasons))
        if found is None:
            found = memo[id(c.reasons)] = "[" + ", ".join(map(reason, c.reasons)) + "]"
        return found

    lines = [f'    {{"filename": {text(c.entry.filename)}, "url": {text(c.entry.url)}, "accepted": true, '
             f'"rank": {c.rank}, "reasons": [], "notes": [{", ".join(text(n) for n in c.notes)}]}}'
             for c in result.accepted]
    lines += [f'    {{"filename": {text(c.entry.filename)}, "url": {text(c.entry.url)}, "accepted": false, '
              f'"rank": null, "reasons": {reasons(c)}, "notes": []}}' for c in result.rejected]
    marker = '"candidates": []'
    return head.replace(marker, '"candidates": [\n' + ",\n".join(lines) + "\n  ]", 1) + "\n"


# ----------------------------------------------------------------------------------------------------------
# Rendering (pure: Resolution -> text lines)


def _checksum(e: WheelEntry) -> str:
    return f"sha256 pinned ({e.sha256[:12]}…)" if e.sha256 else "no published sha256 (recorded on first download)"


def _size(e: WheelEntry) -> str:
    return f"{e.size / 1_048_576:.1f} MiB" if e.size else "size unknown"


def selected_lines(e: WheelEntry) -> list[str]:
    return [
        f"selected: {e.filename}",
        f"  flash-attn {e.base_version} · {e.source} ({e.evidence}) · {_size(e)} · {_checksum(e)}",
        f"  {e.url}",
    ]


def render(result: Resolution, *, explain: bool = False, verbose: bool = False) -> list[str]:
    lines: list[str] = []
    if result.selected is not None:
        lines.extend(selected_lines(result.selected))
        lines.append(f"why: {result.why}")
    else:
        lines.append(result.why)
    lines.append(f"for: {result.target}")
    if explain:
        lines.extend(explain_lines(result, verbose=verbose))
    for item in result.advice:
        lines.append(f"advice: {item}")
    return lines


def _accepted_line(c: Candidate) -> str:
    e = c.entry
    sha = "sha256" if e.sha256 else "no sha256"
    return f"  {c.rank:>4}. {e.filename}  [{e.source}, {e.evidence}, {sha}, {e.release or '-'}]"


def explain_lines(result: Resolution, *, verbose: bool = False) -> list[str]:
    """Accepted wheels best first; rejected ones grouped by reason code with counts (4,000 rows stay readable).
    A wheel rejected for several reasons is counted under each of them."""
    lines: list[str] = []
    accepted = result.accepted
    lines.append("")
    lines.append(f"accepted: {len(accepted)} wheel(s), best first" if accepted else "accepted: none")
    shown = accepted if verbose else accepted[:SHOWN_ACCEPTED]
    lines.extend(_accepted_line(c) for c in shown)
    if len(shown) < len(accepted):
        lines.append(f"        … and {len(accepted) - len(shown)} more (-v lists all)")
    rejected = result.rejected
    lines.extend(near_miss_lines(rejected, verbose=verbose))
    lines.append("")
    lines.append(f"rejected: {len(rejected)} wheel(s), by reason (a wheel counts under each of its reasons)")
    by_code: dict[str, Counter[str]] = defaultdict(Counter)
    files: dict[tuple[str, str], list[str]] = defaultdict(list)
    for c in rejected:
        for r in c.reasons:
            by_code[r.code][r.message] += 1
            if verbose:
                files[(r.code, r.message)].append(c.entry.filename)
    for code in REASONS:
        messages = by_code.get(code)
        if not messages:
            continue
        total = sum(messages.values())
        lines.append(f"  {code}: {total} — {REASONS[code]}")
        top = messages.most_common() if verbose else messages.most_common(SHOWN_MESSAGES)
        for message, n in top:
            lines.append(f"      {n:>5} × {message}")
            if verbose:
                lines.extend(f"              {name}" for name in files[(code, message)])
        if len(top) < len(messages):
            lines.append(f"      … {len(messages) - len(top)} more distinct message(s) (-v lists all)")
    return lines


def near_miss_lines(rejected: tuple[Candidate, ...], *, verbose: bool = False) -> list[str]:
    """Rejected wheels that fail a single rule, by rule, newest flash-attn first (a file re-released under
    several tags once): the ones a single change on this machine would make fit."""
    single: dict[str, dict[str, Candidate]] = defaultdict(dict)
    for c in sorted(rejected, key=lambda c: (c.entry.derived, tuple(-x for x in c.entry.fa_key))):
        if len(c.reasons) == 1:
            single[c.reasons[0].code].setdefault(c.entry.filename, c)
    if not single:
        return []
    lines = ["", f"near misses: {sum(map(len, single.values()))} file(s) fail one rule only"]
    for code in REASONS:
        if code not in single:
            continue
        found = list(single[code].values())
        lines.append(f"  {code}: {len(found)}")
        shown = found if verbose else found[:SHOWN_NEAR_MISSES]
        lines.extend(f"      {c.entry.filename}: {c.reasons[0].message}" for c in shown)
        if len(shown) < len(found):
            lines.append(f"      … and {len(found) - len(shown)} more (-v lists all)")
    return lines
