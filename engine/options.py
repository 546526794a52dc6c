"""The engine's own settings keys (kept in `EngineSettings.extra`), validated in one place (pure).

`vox1-settings/1` keeps keys it does not know verbatim, so a typo or a wrong type in one of these would
otherwise surface as a traceback in the middle of a run; here it becomes an input error naming the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.batching import DEFAULT_CPU_BATCH, DEFAULT_MAX_BATCH
from engine.chunking import DEFAULT_MAX_CHARS
from engine.errors import EngineInputError
from engine.settings import EngineSettings

DEFAULT_ADAPTER = "causal-lm"
# Keys whose change needs a new model object (the adapter builds it); the others apply to the next run.
MODEL_KEYS = ("adapter", "adapter_options")


@dataclass(frozen=True)
class EngineOptions:
    adapter: str = DEFAULT_ADAPTER
    adapter_options: Mapping[str, Any] = field(default_factory=dict)
    max_new_tokens: int | None = None  # None: the adapter's default
    max_chunk_chars: int = DEFAULT_MAX_CHARS
    cpu_batch_size: int = DEFAULT_CPU_BATCH
    max_batch: int = DEFAULT_MAX_BATCH
    activity_log: str | None = None


def _positive_int(extra: Mapping[str, Any], key: str, default: int | None) -> int | None:
    raw = extra.get(key)
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not str(raw).strip().isdigit() or int(raw) < 1:
        raise EngineInputError(f"invalid settings: {key}: {raw!r} is not allowed; use an integer >= 1",
                               f"fix {key} in the settings file (or remove it for the default)")
    return int(raw)


def engine_options(settings: EngineSettings) -> EngineOptions:
    extra = settings.extra
    adapter = extra.get("adapter", DEFAULT_ADAPTER)
    if not isinstance(adapter, str) or not adapter:
        raise EngineInputError(f"invalid settings: adapter: {adapter!r} is not allowed; use a name such as "
                               f"{DEFAULT_ADAPTER!r}", "fix adapter in the settings file")
    adapter_options = extra.get("adapter_options") or {}
    if not isinstance(adapter_options, Mapping):
        raise EngineInputError(f"invalid settings: adapter_options: {adapter_options!r} is not a JSON object",
                               "fix adapter_options in the settings file")
    log = extra.get("activity_log")
    if log is not None and not isinstance(log, str):
        raise EngineInputError(f"invalid settings: activity_log: {log!r} is not a file path",
                               "fix activity_log in the settings file")
    return EngineOptions(
        adapter=adapter,
        adapter_options=dict(adapter_options),
        max_new_tokens=_positive_int(extra, "max_new_tokens", None),
        max_chunk_chars=_positive_int(extra, "max_chunk_chars", DEFAULT_MAX_CHARS) or DEFAULT_MAX_CHARS,
        cpu_batch_size=_positive_int(extra, "cpu_batch_size", DEFAULT_CPU_BATCH) or DEFAULT_CPU_BATCH,
        max_batch=_positive_int(extra, "max_batch", DEFAULT_MAX_BATCH) or DEFAULT_MAX_BATCH,
        activity_log=log or None,
    )
