"""Model adapters: how the engine loads a model with a given attention/dtype/device and generates a batch.

`get_adapter(name)` maps the settings key `adapter` to an adapter; "causal-lm" is the generic transformers
causal language model adapter (tests, bench, any `AutoModelForCausalLM` checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.adapters.base import LoadedModel, LoadSpec, ModelAdapter
from engine.errors import EngineInputError

ADAPTERS = ("causal-lm",)

__all__ = ["ADAPTERS", "LoadSpec", "LoadedModel", "ModelAdapter", "get_adapter"]


def get_adapter(name: str, options: Mapping[str, Any] | None = None) -> ModelAdapter:
    if name == "causal-lm":
        from engine.adapters.causal_lm import CausalLMAdapter

        try:
            return CausalLMAdapter(**dict(options or {}))
        except (TypeError, ValueError) as exc:
            raise EngineInputError(f"invalid settings: adapter_options for {name}: {exc}",
                                   "allowed: max_new_tokens (integer), local_files_only (true/false)") from exc
    raise EngineInputError(f"unknown model adapter {name!r}", f"use one of: {', '.join(ADAPTERS)}")
