"""Holds the loaded model for its settings; `apply_settings` reloads only when it must.

A reload is needed when attention, dtype, device or model changed (or the adapter that builds the model);
batch size, chunking and `max_new_tokens` apply to the next run without one. The new model is loaded beside
the old one; if that fails the old one keeps serving and the result says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.adapters import get_adapter
from engine.adapters.base import LoadedModel, ModelAdapter
from engine.attention import AttentionFacts
from engine.batching import BatchRunner
from engine.errors import EngineError, EngineInputError
from engine.loader import LoadReport, load_model
from engine.options import MODEL_KEYS, engine_options
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
    """The changed keys that need a new model (pure)."""
    changed = [k for k in RELOAD_KEYS if getattr(old, k) != getattr(new, k)]
    before, after = engine_options(old), engine_options(new)
    return tuple(changed + [k for k in MODEL_KEYS if getattr(before, k) != getattr(after, k)])


def run_options(settings: EngineSettings) -> dict[str, Any]:
    """What the loaded model reads per run (`LoadedModel.configure`)."""
    max_new_tokens = engine_options(settings).max_new_tokens
    return {} if max_new_tokens is None else {"max_new_tokens": max_new_tokens}


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
        loaded, report = self._load(self.adapter, self.settings)
        self.loaded, self.report = loaded, report
        return report

    def _load(self, adapter: ModelAdapter, settings: EngineSettings) -> tuple[LoadedModel, LoadReport]:
        if not settings.model_path:
            raise EngineInputError("no model_path in the settings", "set model_path to the model folder")
        device = resolve_device(settings.device, self.facts)
        dtype = resolve_dtype(settings.dtype, device, self.facts)
        return load_model(adapter, model_path=settings.model_path, requested=settings.attention_implementation,
                          facts=self.facts, device=device, dtype=dtype, log=self.log, options=run_options(settings))

    def apply_settings(self, new: EngineSettings, adapter: ModelAdapter | None = None) -> ApplyResult:
        """Switch to `new`; `adapter` replaces the current one (default: built from `new` when its name or
        options changed). Never raises for bad settings: the result says why they were not applied."""
        changed: tuple[str, ...] = ()
        try:
            changed = needs_reload(self.settings, new)
            if not changed and self.loaded is not None:
                self.loaded.configure(run_options(new))
                if new.batch_size != self.settings.batch_size:
                    self.runner = None  # a new explicit batch size replaces the learned cap
                self.settings = new
                return ApplyResult(reloaded=False, ok=True)
            if adapter is None and set(changed) & set(MODEL_KEYS):
                options = engine_options(new)
                adapter = get_adapter(options.adapter, options.adapter_options)
            adapter = adapter or self.adapter
            loaded, report = self._load(adapter, new)
        except EngineError as exc:
            self.log(f"⚠️ New settings not applied ({exc.message}); still using the previous model")
            return ApplyResult(reloaded=False, ok=False, error=exc.message, changed=changed)
        if self.loaded is not None:
            self.loaded.close()
        self.loaded, self.report, self.settings, self.runner, self.adapter = loaded, report, new, None, adapter
        return ApplyResult(reloaded=True, ok=True, changed=changed)

    def cpu_batch_size(self) -> int:
        return engine_options(self.settings).cpu_batch_size

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()
        self.loaded = None
