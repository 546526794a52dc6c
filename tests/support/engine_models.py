"""Tiny random transformers models built from configs and saved to disk (no download, a few hundred KB)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

TINY_GEOMETRY: dict[str, Any] = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128,
                                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                 "max_position_embeddings": 256}


def save_tiny_model(root: Path, family: str) -> Path:
    """A random Llama or Qwen2 causal LM saved with `save_pretrained` (reloaded with `from_pretrained`)."""
    import torch
    import transformers

    classes: dict[str, tuple[Any, Any]] = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
    }
    config_cls, model_cls = classes[family]
    torch.manual_seed(0)
    model = model_cls(config_cls(**TINY_GEOMETRY))
    path = root / family
    model.save_pretrained(path)
    return path


def write_settings(path: Path, **values: Any) -> Path:
    path.write_text(json.dumps({"schema": "vox1-settings/1", **values}), encoding="utf-8")
    return path


class StandInAdapter:
    """The real causal-LM adapter with what a GPU would add, for a machine without one: a spec that says
    `cuda:N` runs on the CPU; `fail_fa2_smoke` makes FlashAttention 2's first forward fail as on a Turing GPU
    (its kernels cannot run here, so FA2 loads as eager); `on_generate(batch)` sees every batch first and may
    raise what a GPU would (e.g. the real `torch.cuda.OutOfMemoryError`)."""

    name = "causal-lm"

    def __init__(self, *, fail_fa2_smoke: bool = False, fa2_as_eager: bool = False,
                 on_generate: Callable[[Sequence[str]], None] | None = None, max_new_tokens: int = 3) -> None:
        from engine.adapters.causal_lm import CausalLMAdapter

        self.inner = CausalLMAdapter(max_new_tokens=max_new_tokens)
        self.fail_fa2_smoke = fail_fa2_smoke
        self.fa2_as_eager = fa2_as_eager
        self.on_generate = on_generate
        self.specs: list[Any] = []

    def support(self, model_path: str) -> Any:
        return self.inner.support(model_path)

    def load(self, spec: Any) -> Any:
        from engine.settings import AttentionImpl

        self.specs.append(spec)
        fa2 = spec.attention is AttentionImpl.FLASH_ATTENTION_2
        run_as = dataclasses.replace(spec, device="cpu",
                                     attention=AttentionImpl.EAGER if fa2 and self.fa2_as_eager else spec.attention)
        loaded: Any = self.inner.load(run_as)  # methods are replaced below
        if self.fail_fa2_smoke and fa2:
            def smoke() -> None:
                raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")
            loaded.smoke = smoke
        if self.on_generate is not None:
            real, hook = loaded.generate, self.on_generate

            def generate(batch: Sequence[str]) -> list[dict[str, Any]]:
                hook(batch)
                return list(real(batch))

            loaded.generate = generate
        return loaded
