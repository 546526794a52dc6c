"""`vox1-setup explain-error [TEXT | --file F | -]`: cause and fix for an error pasted from anywhere."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from vox1_setup.commands._common import (
    app_context,
    emit_json,
    env_file_option,
    info,
    manifest_option,
    output_options,
    python_option,
)
from vox1_setup.errors import BadInputError

EXPLAIN_SCHEMA = "vox1-explain/1"

# Causes a different flash-attn wheel fixes: with an environment, name the wheel and the command.
WHEEL_FIXES = frozenset({"abi-mismatch", "torch-mismatch", "cuda-mismatch", "python-mismatch", "platform-mismatch",
                         "glibc-too-old", "gpu-arch-missing", "dll-missing", "source-build", "flash-attn-missing",
                         "flash-attn-too-old", "libstdcxx-too-old"})

MAX_INPUT_BYTES = 4 * 1024 * 1024  # a pasted log, not a disk image


def _read_input(text: tuple[str, ...], file: Path | None) -> str:
    if file is not None and text:
        raise BadInputError("give the error as TEXT or with --file, not both")
    if file is not None:
        try:
            data = file.read_bytes()[:MAX_INPUT_BYTES]
        except OSError as exc:
            raise BadInputError(f"cannot read {file}: {exc.strerror or exc}") from exc
        return _decode(data)
    if text == ("-",) or (not text and not sys.stdin.isatty()):
        return _decode(sys.stdin.buffer.read(MAX_INPUT_BYTES) if hasattr(sys.stdin, "buffer")
                       else sys.stdin.read(MAX_INPUT_BYTES).encode("utf-8", "replace"))
    if not text:
        raise BadInputError("no error text given",
                            "pass it as an argument (in quotes), with --file LOG, or pipe it: "
                            "`vox1-setup explain-error - < log.txt`")
    return " ".join(text)


def _decode(data: bytes) -> str:
    """Logs come from Windows too: UTF-16 (PowerShell `>`), UTF-8 with BOM, or a legacy code page."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    return data.decode("utf-8-sig", errors="replace")


def _concrete(cause: str | None, python: str | None, env_file: Path | None, manifest: str | None
              ) -> tuple[dict[str, Any], Any]:
    """With a target (--python/--env): the environment and, for wheel causes, the wheel that fits it."""
    if python is None and env_file is None:
        return {}, None
    from vox1_setup.doctor import resolve_wheel

    app = app_context()
    if env_file is not None:
        from vox1_setup.environment import load_environment_file

        env = load_environment_file(env_file)
    else:
        from vox1_setup.probe import detect_environment

        env = detect_environment(python, paths=app.paths)
    extra: dict[str, Any] = {}
    if cause in WHEEL_FIXES:
        pick, advice, error = resolve_wheel(env, manifest, app.paths)
        if pick is not None:
            target = f" --python \"{python}\"" if python else ""
            extra = {"wheel": pick.filename, "command": f"vox1-setup install{target}"}
        else:
            extra = {"wheel": None, "command": None, "advice": list(advice) or ([error] if error else [])}
    return extra, env


@click.command("explain-error")
@click.argument("text", nargs=-1)
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Read the error from a log file.")
@python_option
@env_file_option
@manifest_option
@output_options
def explain_error(*, text: tuple[str, ...], file: Path | None, python: str | None, env_file: Path | None,
                  manifest: str | None) -> None:
    """Explain an error text: its cause, the fix, and (with --python/--env) the wheel that fixes it.

    TEXT may be several words; `-` (or a pipe) reads standard input.
    """
    from vox1_setup.diagnose import explain

    message = _read_input(text, file)
    if not message.strip():
        raise BadInputError("the error text is empty",
                            "pass it as an argument (in quotes), with --file LOG, or pipe it: "
                            "`vox1-setup explain-error - < log.txt`")
    first = explain(message)
    extra, env = _concrete(first.cause if first else None, python, env_file, manifest)
    diagnosis = explain(message, env) if env is not None else first
    app = app_context()
    doc: dict[str, Any] = {
        "schema": EXPLAIN_SCHEMA,
        "cause": diagnosis.cause if diagnosis else None,
        "summary": diagnosis.summary if diagnosis else "This error text is not one vox1-setup knows.",
        "fix": diagnosis.fix if diagnosis else "Run `vox1-setup doctor`: it checks this machine step by step.",
        "matched": diagnosis.matched if diagnosis else None,
        **extra,
    }
    if app.json:
        emit_json(doc)
        return
    if app.quiet:  # only the result: one line a script or a person can read
        click.echo(f"{doc['cause'] or 'unknown'}: {doc['fix']}")
        return
    if diagnosis is None:
        info("Unknown error: vox1-setup does not recognise this text.", fg="yellow", bold=True)
    else:
        info(f"Cause: {diagnosis.summary}  [{diagnosis.cause}]", bold=True)
        info(f"  matched: {diagnosis.matched}")
    info(f"Fix:   {doc['fix']}")
    if extra.get("wheel"):
        info(f"Here:  `{extra['command']}` would install {extra['wheel']}")
    elif "advice" in extra:
        info("Here:  no prebuilt wheel fits this machine" + (": " + "; ".join(extra["advice"][:3])
                                                            if extra["advice"] else ""))
