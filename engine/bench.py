"""In-target benchmark: attention implementations × batch sizes on a randomly initialised model.

`python -m engine.bench [--preset tiny|qwen3-tts-talker] [--impl LIST] [--batch LIST] [--seq N] [--json]`
(what `vox1-setup bench` runs inside VOX-1's interpreter). No weights are needed: the model is built from
the preset's geometry. Per implementation and batch it measures prefill and decode throughput (tokens/s)
and, on CUDA, peak memory; `--find-max` searches the largest batch that fits and compares it with the
auto planner's estimate (`engine.batching`). The recommendation is the measured winner, never a table.
Output: a `vox1-bench/1` JSON document (stdout with --json, or --out FILE); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.attention import AttentionFacts, ModelSupport, verdicts
from engine.batching import CudaMeter, free_memory, is_oom, measure_auto_batch
from engine.errors import EngineError, EngineExit, EngineInputError, short_error
from engine.runtime import resolve_device
from engine.settings import AttentionImpl, DType, EngineSettings, SettingsError

BENCH_SCHEMA = "vox1-bench/1"
CONCRETE_IMPLS = (AttentionImpl.EAGER, AttentionImpl.SDPA, AttentionImpl.FLASH_ATTENTION_2)
CPU_BATCHES = (1, 4, 16)
GPU_BATCHES = (1, 2, 4, 8, 16, 32, 64)
NEAR_BEST = 0.90  # recommend the smallest batch within 10% of the best throughput (latency and memory matter)
TIE = 0.03  # within 3%: prefer the implementation that needs nothing extra (sdpa, then FA2, then eager)
PREFERENCE = (AttentionImpl.SDPA, AttentionImpl.FLASH_ATTENTION_2, AttentionImpl.EAGER)


@dataclass(frozen=True)
class Preset:
    name: str
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    gpu_dtype: DType
    default_seq: int
    note: str

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "model_type": self.model_type, "layers": self.layers, "heads": self.heads,
                "kv_heads": self.kv_heads, "head_dim": self.head_dim, "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size, "vocab_size": self.vocab_size, "note": self.note}


PRESETS = {
    "tiny": Preset("tiny", "llama", 256, 64, 128, 2, 4, 2, 16, DType.BFLOAT16, 128,
                   "tiny random Llama (hidden 64, 2 layers, 4 heads, 2 KV heads): a smoke-size model"),
    # Qwen3-TTS talker attention geometry (FIELD-NOTES §7): 28 layers, 16 q / 8 KV heads, head dim 128, bf16;
    # KV cache 28·2·8·128·2 B = 112 KiB per token. hidden/intermediate follow the 1.7B talker (2048/6144).
    "qwen3-tts-talker": Preset("qwen3-tts-talker", "qwen3", 3072, 2048, 6144, 28, 16, 8, 128, DType.BFLOAT16, 512,
                               "Qwen3-TTS talker geometry (28 layers, 16 q / 8 KV heads, head dim 128, bf16); "
                               "512 tokens ≈ 41 s of audio at 12.5 frames/s"),
}


@dataclass(frozen=True)
class Measurement:
    impl: AttentionImpl
    batch: int
    ok: bool
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    peak_bytes: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"impl": self.impl.value, "batch": self.batch, "ok": self.ok,
                "prefill_tokens_per_s": _round(self.prefill_tokens_per_s),
                "decode_tokens_per_s": _round(self.decode_tokens_per_s), "peak_bytes": self.peak_bytes,
                "error": self.error}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


@dataclass(frozen=True)
class Recommendation:
    attention_implementation: AttentionImpl
    batch_size: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"attention_implementation": self.attention_implementation.value, "batch_size": self.batch_size,
                "reason": self.reason}


def _speed(m: Measurement) -> float:
    """Decode throughput (what a TTS run spends its time on); prefill when no decode steps were measured."""
    value = m.decode_tokens_per_s if m.decode_tokens_per_s is not None else m.prefill_tokens_per_s
    return value or 0.0


def recommend(results: Sequence[Measurement]) -> Recommendation | None:
    """Pure: the implementation with the best throughput (ties → simpler), its smallest near-best batch."""
    best: dict[AttentionImpl, Measurement] = {}
    for m in results:
        if m.ok and (m.impl not in best or _speed(m) > _speed(best[m.impl])):
            best[m.impl] = m
    if not best:
        return None
    top = max(_speed(v) for v in best.values())
    impl = next(i for i in PREFERENCE if i in best and _speed(best[i]) >= top * (1 - TIE))
    winner = best[impl]
    batch = min(m.batch for m in results if m.impl is impl and m.ok and _speed(m) >= _speed(winner) * NEAR_BEST)
    verb = "decodes" if winner.decode_tokens_per_s is not None else "prefills"
    others = ", ".join(f"{i.value} {_speed(best[i]):,.0f}" for i in PREFERENCE if i in best and i != impl)
    reason = (f"{impl.value} {verb} fastest: {_speed(winner):,.0f} tokens/s at batch {winner.batch}"
              + (f" (best of others: {others})" if others else "")
              + f"; batch {batch} reaches ≥{NEAR_BEST:.0%} of that")
    return Recommendation(impl, batch, reason)


def parse_int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise EngineInputError(f"not a list of integers: {text!r}", "use e.g. 1,4,16") from None
    if not values or any(v < 1 for v in values):
        raise EngineInputError(f"batch sizes must be integers >= 1: {text!r}", "use e.g. 1,4,16")
    return tuple(sorted(set(values)))


def parse_impls(text: str) -> tuple[AttentionImpl, ...]:
    if text.strip() in ("", "auto", "all"):
        return CONCRETE_IMPLS
    out = []
    for part in text.split(","):
        try:
            impl = AttentionImpl(part.strip().lower())
        except ValueError:
            raise EngineInputError(f"unknown attention implementation {part!r}",
                                   "use eager, sdpa, flash_attention_2 (comma-separated) or auto") from None
        if impl is AttentionImpl.AUTO:
            return CONCRETE_IMPLS
        out.append(impl)
    return tuple(dict.fromkeys(out))


# ---------------------------------------------------------------- effects (torch) below this line


class Bench:
    """One randomly initialised model on one device; the attention implementation is switched in place."""

    def __init__(self, preset: Preset, device: str, dtype: DType, *, seq: int, decode_tokens: int, repeats: int,
                 log: Callable[[str], None]) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        auto_model: Any = AutoModelForCausalLM
        self.torch = torch
        self.preset, self.device, self.dtype = preset, device, dtype
        self.seq, self.decode_tokens, self.repeats, self.log = seq, decode_tokens, repeats, log
        config = AutoConfig.for_model(
            preset.model_type, vocab_size=preset.vocab_size, hidden_size=preset.hidden_size,
            intermediate_size=preset.intermediate_size, num_hidden_layers=preset.layers,
            num_attention_heads=preset.heads, num_key_value_heads=preset.kv_heads, head_dim=preset.head_dim,
            max_position_embeddings=max(4096, seq + decode_tokens + 8), tie_word_embeddings=False)
        torch.manual_seed(0)
        started = time.perf_counter()
        with torch.device(device):  # build on the device: initialising a 1.4B model on the CPU takes long
            self.model = auto_model.from_config(config, attn_implementation="eager",
                                                          dtype=getattr(torch, dtype.value))
        self.model.eval()
        self.log(f"built {preset.name} on {device} in {time.perf_counter() - started:.1f} s")
        self.cuda = device.startswith("cuda")

    def support(self) -> ModelSupport:
        cls = type(self.model)
        return ModelSupport(bool(getattr(cls, "_supports_flash_attn", False)), bool(getattr(cls, "_supports_sdpa",
                                                                                          False)),
                            self.preset.head_dim, cls.__name__)

    def use(self, impl: AttentionImpl) -> str:
        """Switch attention; returns what the model reports as in use."""
        setter = getattr(self.model, "set_attn_implementation", None)
        if setter is not None:
            setter(impl.value)  # re-validates; keeps the old value when it raises
        else:  # older transformers read the config at every forward
            self.model.config._attn_implementation = impl.value
        from engine.loader import live_attention

        return live_attention(self.model.config).get("config", impl.value)

    def _sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def _run(self, batch: int, seq: int, steps: int) -> tuple[float, float]:
        """Prefill `seq` tokens then `steps` greedy decode steps; returns (prefill s, decode s)."""
        torch = self.torch
        ids = torch.randint(2, self.preset.vocab_size, (batch, seq), device=self.device)
        with torch.inference_mode():
            self._sync()
            t0 = time.perf_counter()
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            self._sync()
            t1 = time.perf_counter()
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            for _ in range(steps):
                out = self.model(input_ids=token, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = out.logits[:, -1:].argmax(-1)
            self._sync()
            t2 = time.perf_counter()
        del out, past, token, ids
        return t1 - t0, t2 - t1

    def measure(self, impl: AttentionImpl, batch: int) -> Measurement:
        torch = self.torch
        prefill: list[float] = []
        decode: list[float] = []
        peak = None
        try:
            self._run(batch, min(self.seq, 16), 2)  # warm-up: kernels, allocator, lazy init
            for _ in range(self.repeats):
                if self.cuda:
                    free_memory()
                    torch.cuda.reset_peak_memory_stats(self.device)
                p, d = self._run(batch, self.seq, self.decode_tokens)
                if self.cuda:
                    peak = max(peak or 0, int(torch.cuda.max_memory_allocated(self.device)))
                prefill.append(p)
                decode.append(d)
        except Exception as exc:
            if not is_oom(exc):
                raise
            prefill = []
        if not prefill:
            free_memory()  # out of the except block, so the failed run's tensors are gone
            return Measurement(impl, batch, False, error="out of memory")
        return Measurement(impl, batch, True, batch * self.seq / statistics.median(prefill),
                           batch * self.decode_tokens / statistics.median(decode) if self.decode_tokens else None,
                           peak)

    def fits(self, batch: int, probe_steps: int = 4) -> bool:
        try:
            self._run(batch, self.seq, probe_steps)
            ok = True
        except Exception as exc:
            if not is_oom(exc):
                raise
            ok = False
        free_memory()
        return ok

    def planner_estimate(self, probe_steps: int = 4, max_batch: int = 4096) -> dict[str, object]:
        """What `batch_size: auto` would pick for this workload: the engine's own planner, same counters."""
        estimate, peaks = measure_auto_batch(lambda batch: self._run(batch, self.seq, probe_steps),
                                             CudaMeter(self.device), max_batch=max_batch)
        return {**estimate.to_dict(), "peaks": [{"batch": p.batch, "peak_bytes": p.peak_bytes} for p in peaks]}

    def largest_batch(self, start: int, limit: int, deadline: float) -> dict[str, object]:
        return search_largest(self.fits, start=start, limit=limit, deadline=deadline)


def search_largest(fits: Callable[[int], bool], *, start: int, limit: int, deadline: float,
                   clock: Callable[[], float] = time.monotonic) -> dict[str, object]:
    """Doubling from `start` (known to fit), then bisection: the largest batch for which `fits` holds."""
    lo, hi = 0, None  # lo fits, hi does not
    batch = max(1, start)
    probes = 0
    while batch <= limit and clock() < deadline:
        probes += 1
        if fits(batch):
            lo, batch = batch, batch * 2
        else:
            hi = batch
            break
    if hi is None:
        if lo < limit and batch > limit and clock() < deadline:  # the limit itself was skipped by doubling
            probes += 1
            if fits(limit):
                return {"largest": limit, "exact": False, "probes": probes, "note": f"fits at the search limit {limit}"}
            hi = limit
        else:
            return {"largest": lo, "exact": False, "probes": probes,
                    "note": f"fits up to the search limit {limit}" if batch > limit else "time limit reached"}
    while hi - lo > 1 and clock() < deadline:
        probes += 1
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return {"largest": lo, "exact": hi - lo <= 1, "probes": probes, "first_failing": hi}


def run_bench(*, preset_name: str, impls: Sequence[AttentionImpl], batches: Sequence[int] | None, seq: int | None,
              decode_tokens: int, repeats: int, device_setting: str, find_max: bool, max_search: int,
              time_limit_s: float, facts: AttentionFacts, log: Callable[[str], None],
              checkpoint: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The `vox1-bench/1` document; `checkpoint` gets the partial document after every measured point, so a
    run stopped from outside (a timeout) still leaves its results."""
    import torch

    notes: list[str] = []
    requested_preset = preset_name
    device = resolve_device(device_setting, facts)
    if preset_name not in PRESETS:
        raise EngineInputError(f"unknown preset {preset_name!r}", f"use one of: {', '.join(PRESETS)}")
    cpu = not device.startswith("cuda")
    if cpu and preset_name != "tiny":
        notes.append(f"CPU only: the {preset_name} preset needs a GPU; measured the tiny preset instead")
        preset_name = "tiny"
    if cpu:
        notes.append("CPU run: figures show relative sdpa/eager cost on a smoke-size model, not GPU throughput")
    preset = PRESETS[preset_name]
    dtype = DType.FLOAT32 if cpu else preset.gpu_dtype
    seq = seq or preset.default_seq
    batches = tuple(batches or (CPU_BATCHES if cpu else GPU_BATCHES))
    deadline = time.monotonic() + time_limit_s
    # with --find-max, 40% of the time is kept for the searches
    points_deadline = deadline - (0.4 * time_limit_s if find_max and not cpu else 0.0)
    bench = Bench(preset, device, dtype, seq=seq, decode_tokens=decode_tokens, repeats=repeats, log=log)
    support = bench.support()
    by_impl = {v.impl: v for v in verdicts(facts, device, dtype, support)}
    results: list[Measurement] = []
    skipped: list[dict[str, object]] = []
    in_use: dict[str, str] = {}
    largest: dict[str, object] = {}
    complete = False

    def document() -> dict[str, Any]:
        rec = recommend(results)
        return {
            "schema": BENCH_SCHEMA,
            "preset": preset.to_dict(),
            "requested_preset": requested_preset,
            "device": device,
            "device_name": facts.device_name if not cpu else "cpu",
            "dtype": dtype.value,
            "seq": seq,
            "decode_tokens": decode_tokens,
            "repeats": repeats,
            "torch": facts.torch_version,
            "threads": torch.get_num_threads() if cpu else None,
            "facts": facts.to_dict(),
            "in_use": in_use,
            "results": [m.to_dict() for m in results],
            "skipped": skipped,
            "largest_batch": largest,
            "recommendation": rec.to_dict() if rec else None,
            "notes": notes,
            "complete": complete,
        }

    def save_partial() -> None:
        if checkpoint is not None:
            checkpoint(document())

    if find_max and cpu:
        notes.append("no largest-batch search on the CPU: it has no device memory limit to find")
    for impl in impls:
        verdict = by_impl[impl]
        if not verdict.accepted:
            skipped.append({"impl": impl.value, "reason": verdict.reason})
            log(f"{impl.value}: skipped ({verdict.reason})")
            continue
        try:
            in_use[impl.value] = bench.use(impl)
        except Exception as exc:  # transformers refused it: report, measure the others
            skipped.append({"impl": impl.value, "reason": short_error(exc)})
            log(f"{impl.value}: skipped ({short_error(exc)})")
            continue
        for batch in batches:
            if time.monotonic() > points_deadline:
                notes.append(f"time limit reached before {impl.value} batch {batch}")
                break
            m = bench.measure(impl, batch)
            results.append(m)
            log(f"{impl.value} batch {batch}: " + (
                f"prefill {m.prefill_tokens_per_s:,.0f} tok/s, decode {m.decode_tokens_per_s or 0:,.0f} tok/s"
                + (f", peak {m.peak_bytes / 2**20:,.0f} MiB" if m.peak_bytes else "") if m.ok else "out of memory"))
            save_partial()
            if not m.ok:
                break  # larger batches will not fit either
    if find_max and not cpu:  # after all throughput points, so a slow eager search cannot starve the others
        searchable = sorted(in_use, key=lambda v: PREFERENCE.index(AttentionImpl(v)))
        for n, name in enumerate(searchable):
            impl = AttentionImpl(name)
            share = (deadline - time.monotonic()) / (len(searchable) - n)
            if share <= 0:
                notes.append(f"time limit reached before the largest-batch search for {name}")
                continue
            bench.use(impl)
            fitted = [m.batch for m in results if m.impl is impl and m.ok]
            search = bench.largest_batch(max(fitted or [1]), max_search, time.monotonic() + share)
            search["planner"] = bench.planner_estimate(max_batch=max_search)
            largest[name] = search
            save_partial()
            log(f"{name}: largest batch {search['largest']} (auto planner estimate "
                f"{search['planner']['batch']})")  # type: ignore[index]
    complete = True
    return document()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.splitlines()[0] if __doc__
                                else None)
    p.add_argument("--preset", default="qwen3-tts-talker", choices=sorted(PRESETS))
    p.add_argument("--impl", default="auto", help="comma-separated: eager,sdpa,flash_attention_2 (default: all)")
    p.add_argument("--batch", default=None, help="comma-separated batch sizes (CPU: 1,4,16; GPU: 1..64)")
    p.add_argument("--seq", type=int, default=None, help="prompt length in tokens (preset default)")
    p.add_argument("--decode-tokens", type=int, default=32, help="decode steps measured per run")
    p.add_argument("--repeats", type=int, default=3, help="measured runs per point (median)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--find-max", action="store_true", help="CUDA: search the largest batch; compare the planner")
    p.add_argument("--max-search", type=int, default=4096, help="upper bound of the largest-batch search")
    p.add_argument("--time-limit", type=float, default=420.0, help="stop measuring after this many seconds")
    p.add_argument("--json", action="store_true", help="print the vox1-bench/1 JSON on stdout")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def log(message: str) -> None:
        if not args.quiet:
            print(f"[bench] {message}", file=sys.stderr, flush=True)

    try:
        if args.seq is not None and args.seq < 1:
            raise EngineInputError("--seq must be >= 1")
        if args.repeats < 1 or args.decode_tokens < 0:
            raise EngineInputError("--repeats must be >= 1 and --decode-tokens >= 0")
        try:  # the same device rule as the settings file
            device = EngineSettings().with_value("device", args.device).device
        except SettingsError as exc:
            raise EngineInputError(f"--device: {exc}", "use auto, cpu, cuda or cuda:N") from exc
        impls = parse_impls(args.impl)
        batches = parse_int_list(args.batch) if args.batch else None
        from engine.facts import gather_facts

        facts = gather_facts()
        doc = run_bench(preset_name=args.preset, impls=impls, batches=batches, seq=args.seq,
                        decode_tokens=args.decode_tokens, repeats=args.repeats, device_setting=device,
                        find_max=args.find_max, max_search=args.max_search, time_limit_s=args.time_limit,
                        facts=facts, log=log, checkpoint=(lambda d: write_json(args.out, d)) if args.out else None)
    except EngineError as exc:
        if args.json:
            print(json.dumps({"schema": BENCH_SCHEMA, "error": exc.to_dict()}))
        else:
            print(f"error: {exc.message}" + (f"\nhint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return int(exc.exit_code)
    if args.out:
        write_json(args.out, doc)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_table(doc))
    return int(EngineExit.OK)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Whole documents only (temp file + replace): a reader never sees half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def render_table(doc: dict[str, Any]) -> str:
    """Plain-text table of a vox1-bench/1 document (shared with `vox1-setup bench`)."""
    preset = doc["preset"]
    lines = [f"preset {preset['name']} on {doc['device_name']} ({doc['dtype']}), seq {doc['seq']}, "
             f"{doc['decode_tokens']} decode steps"]
    lines += [f"note: {n}" for n in doc.get("notes", [])]
    if not doc.get("complete", True):
        lines.append("note: INCOMPLETE - the run was stopped before it finished; these are the points measured")
    lines.append(f"{'impl':<18}{'batch':>6}{'prefill tok/s':>16}{'decode tok/s':>15}{'peak MiB':>11}  status")
    for r in doc["results"]:
        peak = f"{r['peak_bytes'] / 2**20:,.0f}" if r.get("peak_bytes") else "-"
        pre = f"{r['prefill_tokens_per_s']:,.0f}" if r.get("prefill_tokens_per_s") else "-"
        dec = f"{r['decode_tokens_per_s']:,.0f}" if r.get("decode_tokens_per_s") else "-"
        lines.append(f"{r['impl']:<18}{r['batch']:>6}{pre:>16}{dec:>15}{peak:>11}  {'ok' if r['ok'] else r['error']}")
    for s in doc.get("skipped", []):
        lines.append(f"{s['impl']:<18} skipped: {s['reason']}")
    for impl, found in (doc.get("largest_batch") or {}).items():
        planner = found.get("planner", {})
        lines.append(f"largest batch ({impl}): {found['largest']}" + ("" if found.get("exact") else "+")
                     + f"; auto planner estimate: {planner.get('batch', '-')}")
    rec = doc.get("recommendation")
    lines.append(f"recommendation: attention_implementation={rec['attention_implementation']}, "
                 f"batch_size={rec['batch_size']} ({rec['reason']})" if rec else "recommendation: none (no result)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
