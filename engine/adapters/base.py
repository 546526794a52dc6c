"""The adapter protocol: everything the engine needs from a model family, nothing more."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.attention import ModelSupport
from engine.settings import AttentionImpl, DType


@dataclass(frozen=True)
class LoadSpec:
    model_path: str
    attention: AttentionImpl  # never AUTO: the loader resolves it
    dtype: DType  # never AUTO
    device: str  # "cpu" or "cuda:N"
    options: Mapping[str, Any] = field(default_factory=dict)


class LoadedModel(Protocol):
    def smoke(self) -> None:
        """One short forward pass; raises when the attention kernel cannot run (e.g. FA2 on a Turing GPU)."""

    def generate(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON-able output per input, same order. May raise an out-of-memory error."""

    def configure(self, options: Mapping[str, Any]) -> None:
        """Apply run options (e.g. `max_new_tokens`) without reloading; unknown keys are ignored."""

    def live_attention(self) -> dict[str, str]:
        """Implementation actually in use per config (`model.config._attn_implementation` and sub-configs)."""

    def close(self) -> None:
        """Release the weights (and cached device memory)."""


class ModelAdapter(Protocol):
    name: str

    def support(self, model_path: str) -> ModelSupport:
        """What the model class supports, read without loading weights."""

    def load(self, spec: LoadSpec) -> LoadedModel:
        """Load with exactly `spec.attention`; raise on failure (the loader decides about falling back)."""
