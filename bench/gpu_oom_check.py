"""GPU check: the OOM back-off with real `torch.cuda.OutOfMemoryError`s (part of bench/gpu_check.sh).

Builds the talker-geometry model on the GPU, measures its per-item memory, then caps this process's share of
GPU memory (`torch.cuda.set_per_process_memory_fraction`) so that only about `--fit` items fit. The engine's
BatchRunner starts at batch 64 over 40 chunks plus one chunk too long to fit even alone, and must:
return the 40 outputs in order, lower and remember the cap (not to 1: only the oversize chunk needs more than
the GPU has), report the oversize chunk (index + text).

    python bench/gpu_oom_check.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.batching import BatchRunner, CudaMeter, estimate_batch, free_memory, measure_auto_batch
from engine.bench import PRESETS, Bench
from engine.settings import AttentionImpl, DType

TOKENS_PER_CHAR = 4  # a chunk of n characters is run as a prompt of 4·n tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", default="qwen3-tts-talker", choices=sorted(PRESETS))
    parser.add_argument("--impl", default="sdpa")
    parser.add_argument("--fit", type=int, default=12, help="about how many typical chunks fit at once")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("error: no CUDA device; this check needs an NVIDIA GPU", file=sys.stderr)
        return 2
    device = "cuda:0"
    started = time.monotonic()
    typical = [f"Chunk {i:02d}: " + "word " * (20 + i % 7) for i in range(40)]
    longest = max(len(t) for t in typical)
    bench = Bench(PRESETS[args.preset], device, DType.BFLOAT16, seq=longest * TOKENS_PER_CHAR, decode_tokens=4,
                  repeats=1, log=lambda m: print(f"[oom] {m}", file=sys.stderr))
    bench.use(AttentionImpl(args.impl))
    errors: list[str] = []
    sizes: list[int] = []

    def generate(texts: list[str]) -> list[dict[str, Any]]:
        sizes.append(len(texts))
        seq = max(len(t) for t in texts) * TOKENS_PER_CHAR
        try:
            bench._run(len(texts), seq, 4)
        except Exception as exc:
            errors.append(type(exc).__module__ + "." + type(exc).__name__)
            raise
        return [{"len": len(t)} for t in texts]

    # the engine's own planner measures the per-chunk cost (peaks at batches 1 and 4 of the longest chunk)
    measured, peaks = measure_auto_batch(lambda n: generate([max(typical, key=len)] * n), CudaMeter(device))
    per_item, base = measured.per_item_bytes, measured.base_bytes
    _free, total = torch.cuda.mem_get_info(device)
    allowed = base + per_item * args.fit
    torch.cuda.set_per_process_memory_fraction(min(0.95, allowed / total), device)
    free_memory()
    # memory grows about linearly with the prompt: 3× the length of `fit` typical chunks cannot fit alone
    monster = "Too long to fit alone: " + "word " * (longest * args.fit * 3 // 5)
    items = [*typical[:20], monster, *typical[20:]]
    sizes.clear()
    runner = BatchRunner(64, log=lambda m: print(f"[oom] {m}", file=sys.stderr))
    result = runner.run(items, generate)
    second_sizes_start = len(sizes)
    again = runner.run(typical, generate)
    estimate = estimate_batch(peaks[0], peaks[1], available_bytes=allowed, margin=0.0, max_batch=64)
    checks = {
        "real OutOfMemoryError raised": any(e.endswith("OutOfMemoryError") for e in errors),
        "all 40 typical chunks returned in order": [o["len"] if o else None for i, o in enumerate(result.outputs)
                                                    if i != 20] == [len(t) for t in typical],
        "oversize chunk reported with index and text": [(f.index, f.text == monster, f.out_of_memory)
                                                        for f in result.failures] == [(20, True, True)],
        "cap lowered": result.cap < 64,
        "cap not driven to 1 by the one oversize chunk": result.cap > 1,
        "cap remembered by the next run": max(sizes[second_sizes_start:]) <= result.cap and again.ok,
    }
    doc = {
        "schema": "vox1-gpu-oom-check/1",
        "device": torch.cuda.get_device_name(0),
        "preset": args.preset, "impl": args.impl,
        "per_item_bytes": per_item, "base_bytes": base, "allowed_bytes": allowed,
        "peaks": [{"batch": p.batch, "peak_bytes": p.peak_bytes} for p in peaks],
        "planner_batch_for_allowed": estimate.batch,
        "batch_sizes_tried": sizes[:second_sizes_start], "final_cap": result.cap,
        "errors_seen": sorted(set(errors)),
        "events": [e.to_dict() for e in result.events],
        "checks": checks, "ok": all(checks.values()), "seconds": round(time.monotonic() - started, 1),
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    for name, passed in checks.items():
        print(f"{'PASS' if passed else 'FAIL'}  {name}")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
