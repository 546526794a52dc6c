"""How long `vox1-setup doctor` takes, against the floor and against the tool people use today.

    python bench/doctor.py [--python TARGET] [--runs 7] [--flash-fixture] [--out FILE]

Three commands on the same target, interleaved (A B C A B C …) after one warm-up round so the file cache and
CPU contention hit all of them alike; the median of each is reported:
  floor        TARGET -c "import torch"                       (the physical floor: one torch import)
  collect_env  TARGET -m torch.utils.collect_env              (what people run today)
  doctor       <this python> -m vox1_setup doctor --python TARGET --json   (the whole CLI process)
Goals: doctor ≤ 1.3 × floor and ≤ 1.0 × collect_env. Wall time and CPU time (the process and all it waited
for) are both reported: on a shared, loaded computer the CPU figure is the steadier one.

`--flash-fixture` builds a throw-away venv that sees TARGET's torch through a .pth file and holds a fixture
flash_attn that imports torch, so the `import flash_attn` check is measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_SCHEMA = "vox1-bench-doctor/1"
ROOT = Path(__file__).resolve().parents[1]


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and everything it waited for). CPU time does not grow when
    other programs load the machine, so it is the steadier figure on a shared computer."""
    before = _children_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=tempfile.gettempdir())
    took = time.perf_counter() - t0
    after = _children_cpu()
    if proc.returncode not in (0, 9):  # doctor exits 9 when a check fails: still a complete run
        raise SystemExit(f"{argv} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return took, after - before


def _children_cpu() -> float:
    """CPU seconds of waited-for child processes (POSIX; Windows has no such counter: NaN there)."""
    if sys.platform == "win32":
        return float("nan")
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def flash_fixture_venv(target: str, base: Path) -> str:
    """A venv whose site-packages has a fixture flash_attn (imports torch) and sees TARGET's torch."""
    out = subprocess.run([target, "-c", "import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))"],
                         capture_output=True, text=True, check=True)
    torch_site = out.stdout.strip().splitlines()[-1]
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    sp = Path(site)
    (sp / "zz_torch.pth").write_text(torch_site + "\n", encoding="utf-8")
    (sp / "flash_attn").mkdir()
    (sp / "flash_attn" / "__init__.py").write_text("import torch\n__version__ = '2.8.3'\n", encoding="utf-8")
    (sp / "flash_attn_2_cuda.py").write_text("", encoding="utf-8")
    info = sp / "flash_attn-2.8.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: flash_attn\nVersion: 2.8.3\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    return str(py)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--python", default=sys.executable, help="target interpreter (must have torch)")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--flash-fixture", action="store_true", help="measure with a fixture flash_attn installed")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="vox1-bench-") as tmp:
        target = flash_fixture_venv(args.python, Path(tmp)) if args.flash_fixture else args.python
        env = dict(os.environ)
        env["VOX1_HOME"] = str(Path(tmp) / "home")  # doctor's cache/journal/config: throw-away
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        commands = {
            "floor": [target, "-c", "import torch"],
            "collect_env": [target, "-m", "torch.utils.collect_env"],
            "doctor": [sys.executable, "-m", "vox1_setup", "doctor", "--python", target, "--json"],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        cpu: dict[str, list[float]] = {k: [] for k in commands}
        for cmd in commands.values():  # warm-up
            timed(cmd, env)
        for _ in range(args.runs):
            for name, cmd in commands.items():
                wall, used = timed(cmd, env)
                times[name].append(wall)
                cpu[name].append(used)

    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    result = {
        "schema": BENCH_SCHEMA,
        "target": args.python,
        "flash_fixture": args.flash_fixture,
        "runs": args.runs,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None},
        "median_seconds": {k: round(v, 3) for k, v in med.items()},
        "all_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "median_cpu_seconds": {k: round(v, 3) for k, v in med_cpu.items()},
        "doctor_vs_floor": round(med["doctor"] / med["floor"], 2),
        "doctor_vs_collect_env": round(med["doctor"] / med["collect_env"], 2),
        "cpu_doctor_vs_floor": round(med_cpu["doctor"] / med_cpu["floor"], 2),
        "cpu_doctor_vs_collect_env": round(med_cpu["doctor"] / med_cpu["collect_env"], 2),
        "goals": {"doctor_vs_floor": 1.3, "doctor_vs_collect_env": 1.0},
    }
    print(f"{'command':<12} {'median s':>9} {'CPU s':>7}")
    for k, v in med.items():
        print(f"{k:<12} {v:>9.3f} {med_cpu[k]:>7.3f}")
    print(f"doctor / floor       = {result['doctor_vs_floor']:.2f} wall, {result['cpu_doctor_vs_floor']:.2f} CPU"
          "  (goal ≤ 1.3)")
    print(f"doctor / collect_env = {result['doctor_vs_collect_env']:.2f} wall, "
          f"{result['cpu_doctor_vs_collect_env']:.2f} CPU  (goal ≤ 1.0)")
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
