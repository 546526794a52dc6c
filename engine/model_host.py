"""Holds the loaded model for its settings; `apply_settings` reloads only when it must.

A reload is needed when attention, dtype, device or model changed (batch size and chunking are read per
run). The new model is loaded beside the old one; if that fails the old one keeps serving and the result
says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.adapters.base import LoadedModel, ModelAdapter
from engine.attention import AttentionFacts
from engine.batching import DEFAULT_CPU_BATCH, BatchRunner
from engine.errors import EngineError, EngineInputError
from engine.loader import LoadReport, load_model
from engine.runtime import resolve_device, resolve_dtype
from engine.settings import EngineSettings

RELOAD_KEYS = ("attention_implementation", "dtype", "device", "model_path")


@dataclass(frozen=True)
class ApplyResult:
    reloaded: bool
    ok: bool
    error: str | None = None
    changed: tuple[str, ...] = ()


def needs_reload(old: EngineSettings, new: EngineSettings) -> tuple[str, ...]:
    changed = [k for k in RELOAD_KEYS if getattr(old, k) != getattr(new, k)]
    if old.extra.get("adapter") != new.extra.get("adapter"):
        changed.append("adapter")
    return tuple(changed)


class ModelHost:
    def __init__(self, settings: EngineSettings, adapter: ModelAdapter, facts: AttentionFacts,
                 log: Callable[[str], None]) -> None:
        self.settings = settings
        self.adapter = adapter
        self.facts = facts
        self.log = log
        self.loaded: LoadedModel | None = None
        self.report: LoadReport | None = None
        self.runner: BatchRunner | None = None  # keeps the OOM-learned cap between runs

    def load(self) -> LoadReport:
        loaded, report = self._load(self.settings)
        self.loaded, self.report = loaded, report
        return report

    def _load(self, settings: EngineSettings) -> tuple[LoadedModel, LoadReport]:
        if not settings.model_path:
            raise EngineInputError("no model_path in the settings", "set model_path to the model folder")
        device = resolve_device(settings.device, self.facts)
        dtype = resolve_dtype(settings.dtype, device, self.facts)
        options = {k: settings.extra[k] for k in ("max_new_tokens",) if k in settings.extra}
        return load_model(self.adapter, model_path=settings.model_path, requested=settings.attention_implementation,
                          facts=self.facts, device=device, dtype=dtype, log=self.log, options=options)

    def apply_settings(self, new: EngineSettings, adapter: ModelAdapter | None = None) -> ApplyResult:
        changed = needs_reload(self.settings, new)
        if not changed and self.loaded is not None:
            if new.batch_size != self.settings.batch_size:
                self.runner = None  # a new explicit batch size replaces the learned cap
            self.settings = new
            return ApplyResult(reloaded=False, ok=True)
        old_adapter = self.adapter
        if adapter is not None:
            self.adapter = adapter
        try:
            loaded, report = self._load(new)
        except EngineError as exc:
            self.adapter = old_adapter
            self.log(f"⚠️ New settings not applied ({exc.message}); still using the previous model")
            return ApplyResult(reloaded=False, ok=False, error=exc.message, changed=changed)
        if self.loaded is not None:
            self.loaded.close()
        self.loaded, self.report, self.settings, self.runner = loaded, report, new, None
        return ApplyResult(reloaded=True, ok=True, changed=changed)

    def cpu_batch_size(self) -> int:
        raw = self.settings.extra.get("cpu_batch_size", DEFAULT_CPU_BATCH)
        return max(1, int(raw))

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
        self.loaded = None
