#!/usr/bin/env python3
"""Benchmark the resolver: in-process full-explanation resolves over the whole bundled manifest, and the CLI's
end-to-end `resolve --env FILE`, each with a baseline measured in the same run.

    python bench/resolve.py                 # human summary
    python bench/resolve.py --json          # machine-readable (schema vox1-bench-resolve/2)
    python bench/resolve.py --runs 50 --cli-runs 10

Goals (issue 3): in-process median ≤ 30 ms, CLI end-to-end median ≤ 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vox1_setup.commands.resolve import resolution_json  # noqa: E402
from vox1_setup.environment import environment_from_dict  # noqa: E402
from vox1_setup.manifest import default_manifest, parse_manifest_text  # noqa: E402
from vox1_setup.manifest.io import bundled_manifest_bytes, parse_manifest_bytes  # noqa: E402
from vox1_setup.resolver import ResolveOptions, _index, resolve  # noqa: E402

GOAL_IN_PROCESS_MS = 30.0
GOAL_CLI_S = 0.5

# Representative targets: a fit, a Windows miss with computed advice, a Blackwell box, an env-level refusal.
ENVS: dict[str, dict[str, Any]] = {
    "linux-4090-torch2.7": {
        "os": "linux", "machine": "x86_64", "glibc": "2.35", "python": {"version": "3.11.9"},
        "torch": {"version": "2.7.1+cu128", "cuda": "12.8"}, "driver": {"version": "570.86.15", "cuda": "12.8"},
        "gpus": [{"index": 0, "name": "RTX 4090", "compute_capability": "8.9"}],
    },
    "windows-py313-torch2.5-miss": {
        "os": "windows", "machine": "amd64", "python": {"version": "3.13.1"},
        "torch": {"version": "2.5.1+cu124", "cuda": "12.4"}, "driver": {"version": "576.02", "cuda": "12.9"},
        "gpus": [{"index": 0, "name": "RTX 3060", "compute_capability": "8.6"}],
    },
    "linux-5090-blackwell": {
        "os": "linux", "machine": "x86_64", "glibc": "2.39", "python": {"version": "3.12.3"},
        "torch": {"version": "2.9.0+cu128", "cuda": "12.8"}, "driver": {"version": "575.51.03", "cuda": "12.9"},
        "gpus": [{"index": 0, "name": "RTX 5090", "compute_capability": "12.0"}],
    },
    "linux-t4-turing": {
        "os": "linux", "machine": "x86_64", "glibc": "2.35", "python": {"version": "3.10.12"},
        "torch": {"version": "2.7.1+cu126", "cuda": "12.6"}, "driver": {"version": "550.54.14", "cuda": "12.4"},
        "gpus": [{"index": 0, "name": "Tesla T4", "compute_capability": "7.5"}],
    },
}


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


def _timed_ms(func: Any, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        func()
        samples.append(time.perf_counter() - t)
    return _median_ms(samples)


def loading(runs: int) -> dict[str, Any]:
    """What a CLI run pays before resolving: parsing wheels.json (first run after an install or a manifest
    change), loading it from the parse cache (every later run), and indexing it for the resolver."""
    data = bundled_manifest_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        parse_manifest_bytes(data, "bench", trusted=True, cache_dir=cache)  # writes the cache entry
        cached = _timed_ms(lambda: parse_manifest_bytes(data, "bench", trusted=True, cache_dir=cache), runs)
    parsed = _timed_ms(lambda: parse_manifest_text(data, "bench", trusted=True), max(3, runs // 3))
    manifest = default_manifest()

    def index() -> None:
        manifest.index_cache.clear()
        _index(manifest)

    return {"json_parse_median_ms": parsed, "cached_load_median_ms": cached,
            "resolver_index_median_ms": _timed_ms(index, runs)}


def in_process(runs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    manifest = default_manifest()
    load_ms = round((time.perf_counter() - t0) * 1000, 1)
    _index(manifest)
    results: dict[str, Any] = {}
    for name, doc in ENVS.items():
        env = environment_from_dict({"schema": "vox1-env/1", **doc})
        resolve(env, manifest, ResolveOptions())  # warm caches of the environment's tag derivation
        plain, full = [], []
        cpu = []
        for _ in range(runs):
            t = time.perf_counter()
            c = time.process_time()
            r = resolve(env, manifest, ResolveOptions())
            plain.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            t = time.perf_counter()
            resolution_json(resolve(env, manifest, ResolveOptions()))
            full.append(time.perf_counter() - t)
        # Baseline: a bare pass over the same entries (the floor any per-wheel check pays).
        base = []
        for _ in range(runs):
            t = time.perf_counter()
            sum(1 for e in manifest.entries if e.torch_key == (2, 7) and e.abi_tag == "cp311")
            base.append(time.perf_counter() - t)
        results[name] = {
            "selected": r.selected.filename if r.selected else None,
            "accepted": len(r.accepted), "rejected": len(r.rejected),
            "resolve_median_ms": _median_ms(plain),
            "resolve_cpu_median_ms": _median_ms(cpu),
            "resolve_plus_json_median_ms": _median_ms(full),
            "baseline_bare_loop_median_ms": _median_ms(base),
        }
    return {"entries": len(manifest), "manifest_load_ms": load_ms, "runs": runs, "targets": results}


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows: wall time only
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli(runs: int) -> dict[str, Any]:
    env = os.environ.copy()
    with tempfile.TemporaryDirectory() as tmp:
        env["VOX1_HOME"] = tmp
        # As installed: bytecode cached (pip compiles at install). Kept in tmp, so the tree stays clean.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        env_file = Path(tmp) / "env.json"
        env_file.write_text(json.dumps({"schema": "vox1-env/1", **ENVS["linux-4090-torch2.7"]}), encoding="utf-8")
        commands = {
            "baseline_python_startup": [sys.executable, "-c", "pass"],
            "baseline_cli_version": [sys.executable, "-m", "vox1_setup", "--version"],
            "resolve_env": [sys.executable, "-m", "vox1_setup", "resolve", "--env", str(env_file)],
            "resolve_env_explain": [sys.executable, "-m", "vox1_setup", "resolve", "--env", str(env_file),
                                    "--explain"],
            "resolve_env_json": [sys.executable, "-m", "vox1_setup", "resolve", "--env", str(env_file), "--json"],
        }
        out: dict[str, Any] = {"runs": runs}
        # Once with an empty parse cache (bytecode already compiled): the first run after installing or after
        # a manifest change.
        subprocess.run(commands["resolve_env"], capture_output=True, env=env, check=False)
        shutil.rmtree(Path(tmp) / "cache" / "manifests", ignore_errors=True)
        t = time.perf_counter()
        subprocess.run(commands["resolve_env"], capture_output=True, env=env, check=False)
        out["resolve_env_empty_cache_s"] = round(time.perf_counter() - t, 3)
        for name, argv in commands.items():
            subprocess.run(argv, capture_output=True, env=env, check=False)  # warm the page cache
            samples, cpu = [], []
            for _ in range(runs):
                before = _children_cpu()
                t = time.perf_counter()
                done = subprocess.run(argv, capture_output=True, env=env, check=False)
                samples.append(time.perf_counter() - t)
                cpu.append(_children_cpu() - before)
                if done.returncode not in (0, 3):
                    raise SystemExit(f"{name} failed: {done.stderr.decode(errors='replace')}")
            out[f"{name}_median_s"] = round(statistics.median(samples), 3)
            # CPU time (user + sys) is steadier than wall time on a loaded machine.
            out[f"{name}_cpu_median_s"] = round(statistics.median(cpu), 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="in-process repetitions per target")
    parser.add_argument("--cli-runs", type=int, default=7, help="CLI repetitions per command")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["VOX1_HOME"] = home  # the parse cache of the in-process runs goes here, not the user's dirs
        return report_results(args)


def report_results(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {
        "schema": "vox1-bench-resolve/2", "python": sys.version.split()[0], "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "loading": loading(args.runs), "in_process": in_process(args.runs), "cli": cli(args.cli_runs),
        "goals": {"in_process_median_ms": GOAL_IN_PROCESS_MS, "cli_median_s": GOAL_CLI_S}}
    worst = max(t["resolve_median_ms"] for t in report["in_process"]["targets"].values())
    report["met"] = {"in_process": worst <= GOAL_IN_PROCESS_MS,
                     "cli": report["cli"]["resolve_env_median_s"] <= GOAL_CLI_S}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    ip = report["in_process"]
    print(f"load average {report['load_average']}, {report['cpus']} CPUs")
    ld = report["loading"]
    print(f"manifest: {ip['entries']} wheels; JSON parse {ld['json_parse_median_ms']} ms, from the parse cache "
          f"{ld['cached_load_median_ms']} ms, resolver index {ld['resolver_index_median_ms']} ms")
    for name, t in ip["targets"].items():
        print(f"  {name:<28} resolve {t['resolve_median_ms']:>6} ms (cpu {t['resolve_cpu_median_ms']:>6})  "
              f"+json {t['resolve_plus_json_median_ms']:>6} ms  bare loop {t['baseline_bare_loop_median_ms']:>5} ms"
              f"  ({t['accepted']} accepted)")
    c = report["cli"]
    print(f"CLI, median of {c['runs']} (wall / cpu); first run with an empty parse cache "
          f"{c['resolve_env_empty_cache_s']} s:")
    for key in ("baseline_python_startup", "baseline_cli_version", "resolve_env", "resolve_env_explain",
                "resolve_env_json"):
        print(f"  {key:<26} {c[key + '_median_s']:>6} s / {c[key + '_cpu_median_s']:>6} s")
    print(f"goals: in-process ≤ {GOAL_IN_PROCESS_MS} ms: {'met' if report['met']['in_process'] else 'MISSED'}; "
          f"CLI ≤ {GOAL_CLI_S} s: {'met' if report['met']['cli'] else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
