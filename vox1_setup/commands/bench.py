"""`vox1-setup bench`: measure attention implementations and batch sizes inside the target interpreter.

The CLI never imports torch: it copies the `engine` package into a temporary folder, puts that folder first
on the target's PYTHONPATH (only `engine` is shadowed, the target keeps its own torch/transformers), runs
`TARGET -m engine.bench --out FILE` through `vox1_setup.subproc`, and renders the vox1-bench/1 report.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import click

from vox1_setup import subproc
from vox1_setup.commands._common import app_context, emit_json, info, output_options, python_option, warn
from vox1_setup.errors import BadInputError, NotSupportedError, VoxError
from vox1_setup.settings import read_settings, set_value, settings_location_options, settings_path, write_settings

DEFAULT_TIMEOUT_S = 1800.0
REAL_GEOMETRY_PRESET = "qwen3-tts-talker"  # only its batch size means something for VOX-1's model
MISSING_DEPS_MARKERS = ("No module named 'torch'", "No module named 'transformers'", "No module named 'packaging'")


def engine_source() -> Path:
    """The folder of the `engine` package shipped with vox1-setup (found without importing it)."""
    spec = find_spec("engine")
    if spec is None or spec.origin is None:
        raise VoxError("the engine package is missing from this vox1-setup installation",
                       "reinstall vox1-setup")
    return Path(spec.origin).parent


def bench_argv(python: str, out: Path, *, preset: str, impl: str, batch: str | None, seq: int | None,
               decode_tokens: int, repeats: int, device: str, find_max: bool, time_limit: float) -> list[str]:
    argv = [python, "-m", "engine.bench", "--preset", preset, "--impl", impl, "--decode-tokens", str(decode_tokens),
            "--repeats", str(repeats), "--device", device, "--time-limit", str(time_limit), "--out", str(out),
            "--json"]
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
    if result.returncode == 0 and isinstance(doc, dict) and doc.get("schema") == "vox1-bench/1":
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


def write_recommendation(doc: dict[str, Any], path: Path) -> dict[str, object]:
    """Store the measured choice; the batch size only when the real VOX-1 geometry was measured."""
    rec = doc.get("recommendation")
    if not rec:
        raise NotSupportedError("the benchmark produced no recommendation (nothing could be measured)",
                                "check the table: every point failed or was skipped")
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
@click.option("--find-max", is_flag=True, help="GPU: search the largest batch that fits; compare the auto planner.")
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
    app = app_context()
    target = python or sys.executable
    if python is not None and not Path(python).exists() and shutil.which(python) is None:
        raise BadInputError(f"no such interpreter: {python}", "pass the path of VOX-1's python (--python PATH)")
    with tempfile.TemporaryDirectory(prefix="vox1-bench-") as tmp:
        shadow = Path(tmp) / "path"
        shutil.copytree(engine_source(), shadow / "engine", ignore=shutil.ignore_patterns("__pycache__"))
        out = Path(tmp) / "bench.json"
        env = {"PYTHONPATH": os.pathsep.join(p for p in (str(shadow), os.environ.get("PYTHONPATH", "")) if p),
               "PYTHONIOENCODING": "utf-8"}
        argv = bench_argv(target, out, preset=preset, impl=impl, batch=batch, seq=seq, decode_tokens=decode_tokens,
                          repeats=repeats, device=device, find_max=find_max, time_limit=max(10.0, timeout - 60))
        info(f"benchmarking in {target} (this builds a random model; it can take minutes)…")
        result = subproc.run(argv, timeout=timeout, env=env)
        doc = interpret(result, out, target, timeout)
    doc["target_python"] = target
    if app.verbose:
        click.echo(result.stderr.rstrip(), err=True)
    written: dict[str, object] | None = None
    path = settings_path(app.paths, settings_file, app_dir)
    if write:
        written = write_recommendation(doc, path)
    doc["settings_written"] = {"path": str(path), "values": written} if written else None
    if app.json:
        emit_json(doc)
        return 0
    from engine.bench import render_table

    info(render_table(doc))
    if written:
        info(f"wrote {', '.join(f'{k}={v}' for k, v in written.items())} to {path}")
        if "batch_size" not in written:
            warn("batch_size was left as it was: only the qwen3-tts-talker preset on a GPU measures VOX-1's model")
    return 0
