"""Benchmark: wall time of `vox1-setup detect` against a bare `TARGET -c "import torch"` on the same target.

    .venv/bin/python bench/detect.py [--python TARGET] [--runs 7] [--json]

The probe imports torch once in the target, so detect's floor is one torch import; the goal is ≤ 1.3× that.
Runs alternate (detect, import, detect, ...) after one warm-up of each, so disk cache and CPU load hit both
alike; the medians and their ratio are printed, plus the same for CPU time (user+system), which a busy
machine distorts less than wall time, and the median of the per-pair ratios (each detect run against the import
run right after it). Exit 0 always unless --check is given and the goal is missed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

GOAL = 1.3


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows: CPU time of children is not available this way
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its children)."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(args)}\n{proc.stderr[-2000:]}")
    return elapsed, _children_cpu() - cpu_before


def detect_command(target: str) -> list[str]:
    script = Path(sys.executable).with_name("vox1-setup")
    base = [str(script)] if script.exists() else [sys.executable, "-m", "vox1_setup"]
    return [*base, "detect", "--json", "--python", target]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="target interpreter (default: this one)")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each command (default 7)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--check", action="store_true", help=f"exit 1 when the ratio exceeds {GOAL}")
    args = parser.parse_args(argv)

    detect = detect_command(args.python)
    baseline = [args.python, "-c", "import torch"]
    timed(detect)  # warm-up: page cache, .pyc files
    timed(baseline)
    detect_runs = []
    import_runs = []
    for _ in range(args.runs):
        detect_runs.append(timed(detect))
        import_runs.append(timed(baseline))
    detect_times = [wall for wall, _ in detect_runs]
    import_times = [wall for wall, _ in import_runs]
    d, b = statistics.median(detect_times), statistics.median(import_times)
    # Each detect run and the import run right after it saw about the same machine load: the median of their
    # ratios is steadier than the ratio of the medians when other work comes and goes.
    paired = statistics.median(dt / it for dt, it in zip(detect_times, import_times, strict=True))
    dc = statistics.median(cpu for _, cpu in detect_runs)
    bc = statistics.median(cpu for _, cpu in import_runs)
    result = {
        "schema": "vox1-bench-detect/1",
        "target": args.python,
        "runs": args.runs,
        "detect_median_s": round(d, 3),
        "import_torch_median_s": round(b, 3),
        "ratio": round(d / b, 3),
        "paired_ratio_median": round(paired, 3),
        "detect_cpu_median_s": round(dc, 3),
        "import_torch_cpu_median_s": round(bc, 3),
        "cpu_ratio": round(dc / bc, 3) if bc else None,
        "goal": GOAL,
        "detect_s": [round(x, 3) for x in detect_times],
        "import_torch_s": [round(x, 3) for x in import_times],
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"target:            {args.python}")
        print(f"vox1-setup detect: median {d:.3f} s over {args.runs} runs")
        print(f"import torch:      median {b:.3f} s over {args.runs} runs")
        print(f"ratio:             {d / b:.2f}x (goal <= {GOAL}x); median of paired runs {paired:.2f}x")
        if bc:
            print(f"CPU time:          detect {dc:.3f} s, import torch {bc:.3f} s, ratio {dc / bc:.2f}x "
                  "(less sensitive to a busy machine)")
    return 1 if args.check and d / b > GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
