"""`python -m engine --settings FILE [--text TEXT | --input FILE] [--output FILE] [--log FILE] [--json]`

Loads the model the settings name (attention chosen from facts, proven by a smoke forward), then runs the
pipeline on the text. Without text it only loads and reports what is in use (a quick proof of the
attention setup). Exit codes: 0 ok, 2 bad input, 11 attention/model cannot be used, 12 some chunks failed
(listed in the report), 1 a bug.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import EngineError, EngineExit, EngineInputError

LOAD_SCHEMA = "vox1-engine-load/1"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="Run the VOX-1 engine pipeline.")
    p.add_argument("--settings", required=True, type=Path, help="vox1-settings/1 JSON file")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--text", help="text to synthesize")
    src.add_argument("--input", type=Path, help="UTF-8 text file to synthesize ('-' reads stdin)")
    p.add_argument("--output", type=Path, help="write the JSON report to this file")
    p.add_argument("--log", type=Path, help="append the Activity Log to this file (default: the settings' "
                   "activity_log, relative to the settings file)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no Activity Log on the console")
    return p


def _read_text(args: argparse.Namespace) -> str | None:
    if args.text is not None:
        return str(args.text)
    if args.input is None:
        return None
    if str(args.input) == "-":
        return sys.stdin.read()
    try:
        return Path(args.input).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineInputError(f"cannot read {args.input}: {exc}", "pass a UTF-8 text file") from exc


def run(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        doc, code = _run(args)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        doc, code = {"schema": LOAD_SCHEMA, "error": exc.to_dict()}, exc.exit_code
    rendered = json.dumps(doc, indent=2)
    if args.output:
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(rendered + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the report to {args.output}: {exc.strerror or exc}", file=sys.stderr)
            code = code or EngineExit.BAD_INPUT
    if args.json:
        print(rendered)
    return int(code)


def _run(args: argparse.Namespace) -> tuple[dict[str, Any], EngineExit]:
    from engine.activity_log import ActivityLog
    from engine.options import engine_options
    from engine.settings import SettingsError, load_settings

    if not args.settings.is_file():
        raise EngineInputError(f"settings file not found: {args.settings}",
                               "create it with `vox1-setup settings` or the wizard")
    try:
        settings = load_settings(args.settings)
    except SettingsError as exc:
        raise EngineInputError(f"invalid settings: {exc}", "fix the key named above") from exc
    options = engine_options(settings)
    text = _read_text(args)
    log_path = args.log
    if log_path is None and options.activity_log:  # a relative path in the settings is beside the settings file
        log_path = args.settings.parent / Path(options.activity_log).expanduser()
    try:
        log = ActivityLog(log_path, echo=not args.quiet)
    except OSError as exc:
        raise EngineInputError(f"cannot write the activity log {log_path}: {exc.strerror or exc}",
                               "choose a writable file with --log (or activity_log in the settings)") from exc
    from engine.adapters import get_adapter
    from engine.facts import gather_facts
    from engine.model_host import ModelHost

    adapter = get_adapter(options.adapter, options.adapter_options)
    facts = gather_facts()
    log(f"torch {facts.torch_version} (CUDA {facts.torch_cuda or 'none'}); GPU: "
        + (f"{facts.device_name} (compute capability {'.'.join(map(str, facts.capability or ()))})"
           if facts.cuda_available else "none"))
    host = ModelHost(settings, adapter, facts, log)
    report = host.load()
    if text is None:
        return {"schema": LOAD_SCHEMA, "facts": facts.to_dict(), "load": report.to_dict()}, EngineExit.OK
    from engine.pipeline import Pipeline

    result = Pipeline(host).run(text)
    doc = {**result.to_dict(), "facts": facts.to_dict(), "load": report.to_dict()}
    return doc, EngineExit.OK if result.ok else EngineExit.CHUNKS_FAILED


if __name__ == "__main__":
    sys.exit(run())
