"""`vox1-setup bench`: measure attention implementations and batch sizes inside the target interpreter.

The CLI never imports torch: it copies the `engine` package into a temporary folder, runs `engine.bench` in
the target with that folder first on `sys.path` (only `engine` is added, the target keeps its own
torch/transformers; set in the child itself, because an embeddable Windows Python with a `._pth` file
ignores PYTHONPATH) through `vox1_setup.subproc`, and renders the vox1-bench/1 report.
The report is kept as the last measurement (`vox1_setup.bench_results`) for the wizard and doctor.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import click

from vox1_setup import subproc
from vox1_setup.bench_results import BENCH_SCHEMA, REAL_GEOMETRY_PRESET, save_last
from vox1_setup.commands._common import app_context, emit_json, info, output_options, python_option, warn
from vox1_setup.errors import BadInputError, ExitCode, NotSupportedError, VoxError
from vox1_setup.settings import read_settings, set_value, settings_location_options, settings_path, write_settings

DEFAULT_TIMEOUT_S = 1800.0
MISSING_DEPS_MARKERS = ("No module named 'torch'", "No module named 'transformers'", "No module named 'packaging'")


def engine_source() -> Path:
    """The folder of the `engine` package shipped with vox1-setup (found without importing it)."""
    spec = find_spec("engine")
    if spec is None or spec.origin is None:
        raise VoxError("the engine package is missing from this vox1-setup installation",
                       "reinstall vox1-setup")
    return Path(spec.origin).parent


# `python -c BOOT ENGINE_DIR ARGS...`: ENGINE_DIR goes first on sys.path, then `engine.bench` runs as __main__.
_BOOT = ("import runpy, sys; sys.path.insert(0, sys.argv.pop(1)); "
         "runpy.run_module('engine.bench', run_name='__main__', alter_sys=True)")


def bench_argv(python: str, engine_dir: Path, out: Path, *, preset: str, impl: str, batch: str | None,
               seq: int | None, decode_tokens: int, repeats: int, device: str, find_max: bool,
               time_limit: float) -> list[str]:
    argv = [python, "-c", _BOOT, str(engine_dir), "--preset", preset, "--impl", impl,
            "--decode-tokens", str(decode_tokens), "--repeats", str(repeats), "--device", device,
            "--time-limit", str(time_limit), "--out", str(out), "--json"]
    if batch:
        argv += ["--batch", batch]
    if seq is not None:
        argv += ["--seq", str(seq)]
    if find_max:
        argv.append("--find-max")
    return argv


def interpret(result: subproc.Completed, out: Path, python: str, timeout: float) -> dict[str, Any]:
    """The report, or the VoxError that explains why there is none."""
    if result.timed_out:
        raise NotSupportedError(f"the benchmark did not finish within {timeout:.0f} s",
                                "measure fewer points (--batch 1,4 --impl sdpa) or raise --timeout")
    doc: Any = None
    if out.exists():
        doc = json.loads(out.read_text(encoding="utf-8"))
    else:
        for line in reversed(result.stdout.strip().splitlines()):
            try:
                doc = json.loads(line)
                break
            except json.JSONDecodeError:
                continue
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        err = doc["error"]
        cls = BadInputError if err.get("exit_code") == 2 else NotSupportedError
        raise cls(str(err.get("message")), err.get("hint"))
    if result.returncode == 0 and isinstance(doc, dict) and doc.get("schema") == BENCH_SCHEMA:
        return doc
    text = result.stderr + result.stdout
    if any(m in text for m in MISSING_DEPS_MARKERS):
        raise NotSupportedError(f"{python} cannot run the engine: torch or transformers is not installed there",
                                f'install VOX-1\'s engine requirements into it: "{python}" -m pip install '
                                '"transformers>=4.56,<5" (and the torch build VOX-1 ships)')
    if result.returncode in (126, 127):
        raise BadInputError(f"cannot run {python}: {result.stderr.strip()}", "pass the path of a Python interpreter")
    tail = text.strip()[-1500:]
    raise VoxError(f"the benchmark failed in {python} (exit {result.returncode}):\n{tail}",
                   "rerun with -v; the lines above come from the target interpreter")


def write_recommendation(doc: dict[str, Any], path: Path) -> dict[str, object] | None:
    """Store the measured choice; the batch size only when the real VOX-1 geometry was measured.
    None (nothing written) when there is no recommendation."""
    rec = doc.get("recommendation")
    if not rec:
        return None
    settings = read_settings(path)
    settings = set_value(settings, "attention_implementation", str(rec["attention_implementation"]))
    written: dict[str, object] = {"attention_implementation": rec["attention_implementation"]}
    if doc["preset"]["name"] == REAL_GEOMETRY_PRESET:
        settings = set_value(settings, "batch_size", str(rec["batch_size"]))
        written["batch_size"] = rec["batch_size"]
    write_settings(path, settings)
    return written


@click.command("bench")
@python_option
@click.option("--preset", type=click.Choice(["tiny", "qwen3-tts-talker"]), default="qwen3-tts-talker",
              show_default=True, help="Model geometry to build with random weights (CPU always uses tiny).")
@click.option("--impl", default="auto", show_default=True, metavar="LIST",
              help="Attention implementations: eager,sdpa,flash_attention_2 or auto (all that pass their checks).")
@click.option("--batch", default=None, metavar="LIST", help="Batch sizes (default CPU 1,4,16; GPU 1,2,4,…,64).")
@click.option("--seq", type=click.IntRange(min=1), default=None, help="Prompt tokens (default: preset's).")
@click.option("--decode-tokens", type=click.IntRange(min=0), default=32, show_default=True,
              help="Decode steps measured per point.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per point (median).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--find-max/--no-find-max", default=True, show_default=True,
              help="GPU: search the largest batch that fits and compare the auto planner's estimate.")
@click.option("--write-settings", "write", is_flag=True,
              help="Write the recommendation into the engine settings (batch size only for qwen3-tts-talker).")
@settings_location_options
@click.option("--timeout", type=click.FloatRange(min=10), default=DEFAULT_TIMEOUT_S, show_default=True,
              help="Seconds before the benchmark is stopped.")
@output_options
def bench(*, python: str | None, preset: str, impl: str, batch: str | None, seq: int | None, decode_tokens: int,
          repeats: int, device: str, find_max: bool, write: bool, settings_file: Path | None, app_dir: Path | None,
          timeout: float) -> int:
    """Measure eager / sdpa / FlashAttention 2 throughput and memory per batch size in the target Python."""
    from vox1_setup.probe.interpreter import resolve_target

    app = app_context()
    target = resolve_target(python)
    path = settings_path(app.paths, settings_file, app_dir)
    if write:
        read_settings(path)  # a broken settings file stops us before minutes of measuring, not after
    with tempfile.TemporaryDirectory(prefix="vox1-bench-") as tmp:
        shadow = Path(tmp) / "path"
        shutil.copytree(engine_source(), shadow / "engine", ignore=shutil.ignore_patterns("__pycache__"))
        out = Path(tmp) / "bench.json"
        argv = bench_argv(target, shadow, out, preset=preset, impl=impl, batch=batch, seq=seq,
                          decode_tokens=decode_tokens, repeats=repeats, device=device, find_max=find_max,
                          time_limit=max(10.0, timeout - 60))
        info(f"benchmarking in {target} (this builds a random model; it can take minutes)…")
        result = subproc.run(argv, timeout=timeout, env={"PYTHONIOENCODING": "utf-8"})
        doc = interpret(result, out, target, timeout)
    doc["target_python"] = target
    if app.verbose:
        click.echo(result.stderr.rstrip(), err=True)
    measured = doc.get("recommendation") is not None
    if measured:
        save_last(app.paths, doc)
    written = write_recommendation(doc, path) if write else None
    doc["settings_written"] = {"path": str(path), "values": written} if written else None
    if app.json:
        emit_json(doc)
    else:
        from engine.bench import render_table

        table = render_table(doc)
        if app.quiet and measured:  # --quiet: only the final result, the recommendation
            click.echo(table.splitlines()[-1])
        info(table)
        if written:
            info(f"wrote {', '.join(f'{k}={v}' for k, v in written.items())} to {path}")
            if "batch_size" not in written:
                warn("batch_size was left as it was: only the qwen3-tts-talker preset on a GPU measures VOX-1's "
                     "model")
    if not measured:  # the report above says why each implementation was skipped or failed
        click.secho("error: nothing could be measured: every attention implementation was skipped or ran out of "
                    "memory", err=True, fg="red")
        click.echo("hint: see the reasons above; `--impl auto` measures whatever works here", err=True)
        return int(ExitCode.NOT_SUPPORTED)
    return 0
