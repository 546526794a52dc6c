"""Benchmarks of the install pipeline, each against its plain baseline on the same machine in the same run.

1. Download throughput from a loopback HTTP server: vox1_setup.download (hashing while streaming, temp file,
   rename) vs `curl -s -o FILE URL` on the same file. Goal: >= 0.9x curl.
2. Cached install + verify into a real venv: `vox1-setup install --wheel W --sha256 H` (cache hit, lock,
   journal, stash, pip, verify in a fresh process, commit) vs plain `pip install --no-deps --no-index W` followed
   by `python -c "import torch, flash_attn, flash_attn_2_cuda"` (what a user would do by hand; the real
   flash_attn imports torch). Goal: <= 1.5x.

Run: .venv/bin/python bench/install.py [--size-mb 256] [--runs 5] [--json]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.http_server import FileServer  # noqa: E402
from tests.support.install_fixtures import write_env  # noqa: E402
from tests.support.venvs import make_venv  # noqa: E402
from tests.support.wheels import build_wheel, sha256_of  # noqa: E402
from vox1_setup.download import RetryPolicy, download  # noqa: E402


def bench_download(work: Path, size_mb: int, runs: int) -> dict[str, object]:
    blob = work / "blob.whl"
    with blob.open("wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))
    sha = sha256_of(blob)
    curl = shutil.which("curl")
    ours, theirs = [], []
    with FileServer() as srv:
        url = srv.add("/blob.whl", blob)
        for i in range(runs):
            dest = work / f"ours-{i}.whl"
            t = time.perf_counter()
            download(url, dest, expected_sha256=sha, allow_insecure_localhost=True, policy=RetryPolicy(attempts=1))
            ours.append(time.perf_counter() - t)
            dest.unlink()
            if curl:
                out = work / f"curl-{i}.whl"
                t = time.perf_counter()
                subprocess.run([curl, "-s", "-f", "-o", str(out), url], check=True)
                theirs.append(time.perf_counter() - t)
                out.unlink()
    mb = size_mb
    ours_mbs = mb / statistics.median(ours)
    result: dict[str, object] = {"size_mib": mb, "runs": runs, "ours_mib_s": round(ours_mbs, 1)}
    if theirs:
        curl_mbs = mb / statistics.median(theirs)
        result.update(curl_mib_s=round(curl_mbs, 1), ratio=round(ours_mbs / curl_mbs, 3), goal=">= 0.9")
    else:
        result["curl"] = "not found"
    return result


def bench_install(work: Path, runs: int) -> dict[str, object]:
    wheel = build_wheel(work / "wheels", kind="good")
    sha = sha256_of(wheel)
    py = make_venv(work / "bench venv", real_torch=True, share_base=work)
    env_file = write_env(work / "env.json")
    env = {**os.environ, "VOX1_HOME": str(work / "home"), "VOX1_VERIFY_ALLOW_CPU": "1", "PYTHONPATH": str(ROOT)}
    ours_cmd = [sys.executable, "-m", "vox1_setup", "-q", "install", "--python", str(py), "--env", str(env_file),
                "--wheel", str(wheel), "--sha256", sha, "--yes"]
    subprocess.run(ours_cmd, check=True, env=env, capture_output=True)  # warm: the wheel is now cached
    base_install = [str(py), "-m", "pip", "install", "--no-deps", "--no-index", "--force-reinstall", "-q",
                    str(wheel)]
    base_import = [str(py), "-c", "import torch, flash_attn, flash_attn_2_cuda"]
    ours, theirs = [], []
    for _ in range(runs):  # interleaved, so load from other processes hits both alike
        t = time.perf_counter()
        subprocess.run(base_install, check=True, capture_output=True)
        subprocess.run(base_import, check=True, capture_output=True)
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run(ours_cmd, check=True, env=env, capture_output=True)
        ours.append(time.perf_counter() - t)
    json_cmd = [arg if arg != "-q" else "--json" for arg in ours_cmd]
    last = json.loads(subprocess.run(json_cmd, check=True, env=env, capture_output=True, text=True).stdout)
    o, b = statistics.median(ours), statistics.median(theirs)
    return {"runs": runs, "ours_s": round(o, 3), "baseline_s": round(b, 3), "ratio": round(o / b, 3),
            "goal": "<= 1.5", "ours_breakdown_s": last.get("timings"), "verify_cases": len(
                last["verify"]["report"]["functional"]["cases"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--only", choices=("download", "install"), default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vox1-bench-") as tmp:
        work = Path(tmp)
        report: dict[str, object] = {"schema": "vox1-bench-install/1", "python": sys.version.split()[0],
                                     "cpus": os.cpu_count()}
        if args.only in (None, "download"):
            report["download"] = bench_download(work, args.size_mb, args.runs)
        if args.only in (None, "install"):
            report["install"] = bench_install(work, args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
