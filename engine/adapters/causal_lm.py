"""Generic transformers causal-LM adapter (tests, bench, any `AutoModelForCausalLM` checkpoint).

Text goes through the checkpoint's tokenizer when it has one; a checkpoint saved without a tokenizer (the
random test models, bench presets) gets a byte codec: ids = UTF-8 bytes folded into the vocabulary.
Batches are left-padded so that greedy generation matches the unbatched result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.adapters.base import LoadSpec
from engine.attention import ModelSupport
from engine.loader import live_attention
from engine.settings import DType

DEFAULT_MAX_NEW_TOKENS = 16
SMOKE_TOKENS = 4

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
TORCH_DTYPES = {DType.FLOAT32: "float32", DType.FLOAT16: "float16", DType.BFLOAT16: "bfloat16"}


@dataclass(frozen=True)
class ByteCodec:
    """Tokenizer stand-in for checkpoints without one: id 0 pads, 1 starts, bytes map to 2..vocab-1."""

    vocab_size: int
    pad_id: int = 0
    bos_id: int = 1

    def encode(self, text: str) -> list[int]:
        span = max(1, self.vocab_size - 2)
        return [self.bos_id] + [2 + b % span for b in text.encode("utf-8")]


def torch_dtype(dtype: DType) -> Any:
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


class CausalLMLoaded:
    def __init__(self, model: Any, tokenizer: Any, device: str, max_new_tokens: int) -> None:
        self.model = model
        self.tokenizer = tokenizer  # a transformers tokenizer or a ByteCodec
        self.device = device
        self.max_new_tokens = max_new_tokens

    @property
    def pad_id(self) -> int:
        if isinstance(self.tokenizer, ByteCodec):
            return self.tokenizer.pad_id
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else (self.tokenizer.eos_token_id or 0))

    def encode(self, text: str) -> list[int]:
        if isinstance(self.tokenizer, ByteCodec):
            return self.tokenizer.encode(text)
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def batch_inputs(self, texts: Sequence[str]) -> tuple[Any, Any]:
        """Left-padded `input_ids` and `attention_mask` on the model's device."""
        import torch

        ids = [self.encode(t) or [self.pad_id] for t in texts]
        width = max(len(i) for i in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, width - len(seq):] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq):] = 1
        return input_ids.to(self.device), mask.to(self.device)

    def smoke(self) -> None:
        import torch

        ids = torch.arange(1, SMOKE_TOKENS + 1, dtype=torch.long, device=self.device).unsqueeze(0)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, use_cache=False).logits
        if not bool(torch.isfinite(logits).all()):
            raise FloatingPointError("the smoke forward produced NaN/inf logits (try another dtype)")

    def generate(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        import torch

        input_ids, mask = self.batch_inputs(texts)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                                      do_sample=False, pad_token_id=self.pad_id)
        new = out[:, input_ids.shape[1]:].tolist()
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        results = []
        for row in new:
            cut = next((i + 1 for i, t in enumerate(row) if t in eos_ids), len(row))
            tokens = row[:cut]
            text = None if isinstance(self.tokenizer, ByteCodec) else \
                self.tokenizer.decode(tokens, skip_special_tokens=True)
            results.append({"tokens": tokens, "text": text})
        return results

    def configure(self, options: Mapping[str, Any]) -> None:
        self.max_new_tokens = int(options.get("max_new_tokens", self.max_new_tokens))

    def live_attention(self) -> dict[str, str]:
        return live_attention(self.model.config)

    def close(self) -> None:
        from engine.batching import free_memory

        self.model = None
        free_memory()


def has_tokenizer(model_path: str) -> bool:
    """Only a folder that ships tokenizer files gets AutoTokenizer (else it guesses one from the config)."""
    folder = Path(model_path)
    return not folder.is_dir() or any((folder / name).exists() for name in TOKENIZER_FILES)


class CausalLMAdapter:
    name = "causal-lm"

    def __init__(self, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, local_files_only: bool = True) -> None:
        self.max_new_tokens = int(max_new_tokens)
        self.local_files_only = local_files_only  # an offline desktop app never downloads at load time

    def support(self, model_path: str) -> ModelSupport:
        from transformers import AutoConfig, AutoModelForCausalLM

        mapping: Any = AutoModelForCausalLM._model_mapping
        config = AutoConfig.from_pretrained(model_path, local_files_only=self.local_files_only)
        head_dim = getattr(config, "head_dim", None)
        if head_dim is None and getattr(config, "num_attention_heads", None):
            head_dim = config.hidden_size // config.num_attention_heads
        try:
            cls = mapping[type(config)]
        except (KeyError, ValueError):
            return ModelSupport(head_dim=head_dim, model_class=type(config).__name__)
        return ModelSupport(
            flash_attn=bool(getattr(cls, "_supports_flash_attn", False) or getattr(cls, "_supports_flash_attn_2",
                                                                                  False)),
            sdpa=bool(getattr(cls, "_supports_sdpa", False)),
            head_dim=head_dim,
            model_class=cls.__name__,
        )

    def load(self, spec: LoadSpec) -> CausalLMLoaded:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        auto_model: Any = AutoModelForCausalLM
        auto_tokenizer: Any = AutoTokenizer
        model = auto_model.from_pretrained(
            spec.model_path, attn_implementation=spec.attention.value, dtype=torch_dtype(spec.dtype),
            local_files_only=self.local_files_only)
        model.to(spec.device)
        model.eval()
        tokenizer: Any = ByteCodec(int(model.config.vocab_size))
        if has_tokenizer(spec.model_path):
            tokenizer = auto_tokenizer.from_pretrained(spec.model_path, local_files_only=self.local_files_only)
        return CausalLMLoaded(model, tokenizer, spec.device, int(spec.options.get("max_new_tokens",
                                                                                    self.max_new_tokens)))
