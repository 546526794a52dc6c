"""Tiny random transformers models built from configs and saved to disk (no download, a few hundred KB)."""

from __future__ import annotations

import json
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
