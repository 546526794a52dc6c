"""CPU figures for the engine: sdpa vs eager tokens/s on the tiny preset at batch 1, 4 and 16.

    .venv/bin/python bench/engine_cpu.py [--repeats 7] [--threads N] [--out FILE]

Both implementations run on the same randomly initialised model (switched in place) and are interleaved
run by run (eager, sdpa, eager, sdpa…), so a neighbour's load on a shared machine hits both alike and the
ratio stays meaningful; medians are reported. Absolute numbers are CPU numbers, not GPU ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.bench import PRESETS, Bench  # the repo root is on the path from here on
from engine.settings import AttentionImpl, DType

BATCHES = (1, 4, 16)
IMPLS = (AttentionImpl.EAGER, AttentionImpl.SDPA)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(PRESETS["tiny"], "cpu", DType.FLOAT32, seq=args.seq, decode_tokens=args.decode_tokens,
                  repeats=1, log=lambda m: print(f"[cpu] {m}", file=sys.stderr))
    rows = []
    for batch in BATCHES:
        samples: dict[AttentionImpl, list[tuple[float, float]]] = {i: [] for i in IMPLS}
        for impl in IMPLS:  # warm-up
            bench.use(impl)
            bench._run(batch, 16, 2)
        for _ in range(args.repeats):
            for impl in IMPLS:
                bench.use(impl)
                samples[impl].append(bench._run(batch, args.seq, args.decode_tokens))
        row: dict[str, object] = {"batch": batch}
        for impl in IMPLS:
            row[f"{impl.value}_prefill"] = batch * args.seq / statistics.median(p for p, _ in samples[impl])
            row[f"{impl.value}_decode"] = batch * args.decode_tokens / statistics.median(d for _, d in samples[impl])
        rows.append(row)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"tiny preset on CPU ({torch.get_num_threads()} threads, torch {torch.__version__}, load average "
          f"{load:.1f}), seq {args.seq}, {args.decode_tokens} decode steps, median of {args.repeats} interleaved runs")
    print(f"{'batch':>5} | {'eager prefill':>13} {'sdpa prefill':>12} {'sdpa/eager':>10} | "
          f"{'eager decode':>12} {'sdpa decode':>11} {'sdpa/eager':>10}")
    for r in rows:
        keys = ("eager_prefill", "sdpa_prefill", "eager_decode", "sdpa_decode")
        ep, sp, ed, sd = (float(r[k]) for k in keys)  # type: ignore[arg-type]
        print(f"{r['batch']:>5} | {ep:>13,.0f} {sp:>12,.0f} {sp / ep:>9.2f}x | "
              f"{ed:>12,.0f} {sd:>11,.0f} {sd / ed:>9.2f}x")
    if args.out:
        args.out.write_text(json.dumps({"schema": "vox1-engine-cpu/1", "threads": torch.get_num_threads(),
                                        "load_average": load, "seq": args.seq, "decode_tokens": args.decode_tokens,
                                        "repeats": args.repeats, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
