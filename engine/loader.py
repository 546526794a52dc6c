"""Load a model with the planned attention, prove it with a smoke forward, fall back under `auto`.

transformers accepts a FlashAttention 2 request on a Turing GPU or with a wrong-ABI wheel and fails only at
the first forward pass (FIELD-NOTES §6), so "loaded" is not "works": every candidate runs one forward step.
What is logged as "in use" is read back from `model.config._attn_implementation` (and its sub-configs),
not what was requested.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.adapters.base import LoadedModel, LoadSpec, ModelAdapter
from engine.attention import AttentionFacts, AttentionPlan, plan_attention
from engine.batching import free_memory
from engine.errors import AttentionUnavailableError, EngineInputError, ModelLoadError, short_error
from engine.settings import AttentionImpl, DType

LABELS = {AttentionImpl.FLASH_ATTENTION_2: "Flash Attention 2", AttentionImpl.SDPA: "sdpa",
          AttentionImpl.EAGER: "eager"}


@dataclass(frozen=True)
class Attempt:
    impl: AttentionImpl
    stage: str  # "plan", "load", "smoke" (where it failed) or "ok"
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"impl": self.impl.value, "stage": self.stage, "error": self.error}


@dataclass(frozen=True)
class LoadReport:
    model_path: str
    requested: AttentionImpl
    used: AttentionImpl
    live: dict[str, str]  # config path → implementation actually in use
    dtype: DType
    device: str
    plan: AttentionPlan
    attempts: tuple[Attempt, ...]

    @property
    def in_use(self) -> str:
        return self.live.get("config", self.used.value)

    @property
    def fell_back(self) -> bool:
        return any(a.stage != "ok" for a in self.attempts)

    def to_dict(self) -> dict[str, object]:
        return {"model_path": self.model_path, "requested": self.requested.value, "used": self.used.value,
                "in_use": self.in_use, "live": dict(self.live), "dtype": self.dtype.value, "device": self.device,
                "plan": self.plan.to_dict(), "attempts": [a.to_dict() for a in self.attempts]}


def live_attention(config: Any, prefix: str = "config") -> dict[str, str]:
    """`_attn_implementation` of a transformers config and of every nested config (talker, code predictor…)."""
    found: dict[str, str] = {}
    seen: set[int] = set()

    def walk(cfg: Any, path: str) -> None:
        if id(cfg) in seen:
            return
        seen.add(id(cfg))
        impl = getattr(cfg, "_attn_implementation", None)
        if impl is not None:
            found[path] = str(impl)
        names = list(getattr(cfg, "sub_configs", {}) or {}) + sorted(vars(cfg)) if hasattr(cfg, "__dict__") else []
        for name in dict.fromkeys(names):
            if name.startswith("_"):
                continue
            child = getattr(cfg, name, None)
            if child is not None and hasattr(child, "_attn_implementation") and hasattr(child, "to_dict"):
                walk(child, f"{path}.{name}")

    walk(config, prefix)
    return found


def load_model(adapter: ModelAdapter, *, model_path: str, requested: AttentionImpl, facts: AttentionFacts,
               device: str, dtype: DType, log: Callable[[str], None],
               options: dict[str, Any] | None = None) -> tuple[LoadedModel, LoadReport]:
    """The first plan option that loads and runs; AttentionUnavailableError / ModelLoadError otherwise."""
    try:
        support = adapter.support(model_path)
    except Exception as exc:  # a missing folder or a config transformers does not know
        raise EngineInputError(f"cannot read the model at {model_path}: {short_error(exc)}",
                               "set model_path to a folder with config.json (and the weights)") from exc
    wants_fa2 = requested in (AttentionImpl.AUTO, AttentionImpl.FLASH_ATTENTION_2)
    if wants_fa2 and facts.flash_attn_version:
        log(f"Flash Attention {facts.flash_attn_version} detected - attempting to use it")
    plan = plan_attention(requested, facts, device=device, dtype=dtype, support=support)
    attempts: list[Attempt] = [Attempt(v.impl, "plan", v.reason) for v in plan.skipped()]
    pending_fallbacks = [f"{LABELS[v.impl]} not used: {v.reason}" for v in plan.skipped()]
    for impl in plan.order:
        for line in pending_fallbacks:
            log(f"⚠️ {line} - using {LABELS[impl]} instead")
        pending_fallbacks = []
        log(f"Loading {model_path} with attention_implementation={impl.value}, dtype={dtype.value}, device={device}")
        loaded, stage, error = _load_and_smoke(adapter, LoadSpec(model_path, impl, dtype, device, options or {}))
        if loaded is None:
            free_memory()  # out of the except blocks: what the failed attempt allocated can go back now
            if requested is not AttentionImpl.AUTO:
                check = "load" if stage == "load" else "smoke forward"
                raise AttentionUnavailableError(impl.value, check, str(error), _fix_for(impl))
            attempts.append(Attempt(impl, stage, error))
            pending_fallbacks.append(f"{LABELS[impl]} failed to load ({error})" if stage == "load" else
                                     f"{LABELS[impl]} loaded but its first forward pass failed ({error})")
            continue
        attempts.append(Attempt(impl, "ok"))
        live = loaded.live_attention()
        report = LoadReport(model_path, requested, impl, live, dtype, device, plan, tuple(attempts))
        if report.in_use != impl.value:
            log(f"⚠️ requested {impl.value} but the model reports {report.in_use}")
        if report.in_use == AttentionImpl.FLASH_ATTENTION_2.value:
            log("✅ Flash Attention 2 enabled successfully")
        details = ", ".join(f"{k}={v}" for k, v in live.items()) or "not reported by the model"
        log(f"Attention implementation in use: {report.in_use} ({details})")
        return loaded, report
    reasons = "; ".join(f"{a.impl.value} ({a.stage}): {a.error}" for a in attempts if a.stage != "ok")
    raise ModelLoadError(f"could not load {model_path} with any attention implementation: {reasons}",
                         "check model_path and dtype in the settings; `vox1-setup doctor` explains the machine")


def _load_and_smoke(adapter: ModelAdapter, spec: LoadSpec) -> tuple[LoadedModel | None, str, str | None]:
    """(model, "ok", None), or (None, "load" | "smoke", error) when loading or the first forward pass fails."""
    try:
        loaded = adapter.load(spec)
    except Exception as exc:
        return None, "load", short_error(exc)
    try:
        loaded.smoke()
    except Exception as exc:
        error = short_error(exc)
    else:
        return loaded, "ok", None
    loaded.close()
    return None, "smoke", error


def _fix_for(impl: AttentionImpl) -> str:
    if impl is AttentionImpl.FLASH_ATTENTION_2:
        return ("run `vox1-setup doctor` to see why, `vox1-setup install` for a matching wheel; or set "
                "attention_implementation to auto (falls back to sdpa)")
    return "set attention_implementation to auto"
