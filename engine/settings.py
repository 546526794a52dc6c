"""Engine settings: one JSON file shared by the engine, `vox1-setup settings` and the wizard.

Schema `vox1-settings/1`. Unknown keys are kept (a newer VOX-1 may add some); invalid values raise an error
naming the key and the allowed values. Written atomically (temp file + os.replace) so a crash never leaves
half a file. No torch import here.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

SETTINGS_SCHEMA = "vox1-settings/1"


class AttentionImpl(str, Enum):
    AUTO = "auto"
    FLASH_ATTENTION_2 = "flash_attention_2"
    SDPA = "sdpa"
    EAGER = "eager"


class DType(str, Enum):
    AUTO = "auto"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
    FLOAT32 = "float32"


class SettingsError(ValueError):
    """An invalid settings value; the message names the key and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class EngineSettings:
    attention_implementation: AttentionImpl = AttentionImpl.AUTO
    batch_size: int | str = "auto"  # int in 1..MAX_BATCH_SIZE or "auto"
    dtype: DType = DType.AUTO
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:N"
    model_path: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim

    def with_value(self, key: str, raw: Any) -> EngineSettings:
        """A copy with one key set from user text or JSON (validated)."""
        if key in _VALIDATORS:
            return replace(self, **{key: _VALIDATORS[key](raw)})
        return replace(self, extra={**self.extra, key: raw})

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "schema": SETTINGS_SCHEMA,
            "attention_implementation": self.attention_implementation.value,
            "batch_size": self.batch_size,
            "dtype": self.dtype.value,
            "device": self.device,
            "model_path": self.model_path,
        }
        for k, v in self.extra.items():
            doc.setdefault(k, v)
        return doc


def _enum_parser(key: str, enum: type[Enum]) -> Any:
    allowed = ", ".join(str(m.value) for m in enum)

    def parse(raw: Any) -> Enum:
        try:
            return enum(str(raw).strip().lower())
        except ValueError:
            raise SettingsError(key, f"{raw!r} is not allowed; use one of: {allowed}") from None

    return parse


# Far above what any GPU holds for VOX-1's model; a larger number is a typo, not a batch.
MAX_BATCH_SIZE = 4096
_BATCH_ALLOWED = f"use an integer from 1 to {MAX_BATCH_SIZE} or \"auto\""


def _parse_batch_size(raw: Any) -> int | str:
    if isinstance(raw, str) and raw.strip().lower() == "auto":
        return "auto"
    try:
        if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
            raise ValueError
        value = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise SettingsError("batch_size", f"{raw!r} is not allowed; {_BATCH_ALLOWED}") from None
    if not 1 <= value <= MAX_BATCH_SIZE:
        raise SettingsError("batch_size", f"{value} is not allowed; {_BATCH_ALLOWED}")
    return value


def _parse_device(raw: Any) -> str:
    text = str(raw).strip().lower()
    if text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise SettingsError("device", f"{raw!r} is not allowed; use auto, cpu, cuda or cuda:N")


def _parse_model_path(raw: Any) -> str | None:
    if raw is None or (isinstance(raw, str) and raw.strip() in ("", "null", "none")):
        return None
    if not isinstance(raw, str):
        raise SettingsError("model_path", f"{raw!r} is not allowed; use a folder path or a model id")
    return raw


_VALIDATORS: dict[str, Any] = {
    "attention_implementation": _enum_parser("attention_implementation", AttentionImpl),
    "batch_size": _parse_batch_size,
    "dtype": _enum_parser("dtype", DType),
    "device": _parse_device,
    "model_path": _parse_model_path,
}

KNOWN_KEYS = tuple(_VALIDATORS)


def settings_from_dict(doc: Mapping[str, Any]) -> EngineSettings:
    if not isinstance(doc, Mapping):
        raise SettingsError("(file)", "expected a JSON object")
    schema = doc.get("schema", SETTINGS_SCHEMA)
    if schema != SETTINGS_SCHEMA:
        raise SettingsError("schema", f"expected {SETTINGS_SCHEMA!r}, got {schema!r}")
    settings = EngineSettings()
    extra = {k: v for k, v in doc.items() if k not in _VALIDATORS and k != "schema"}
    for key in KNOWN_KEYS:
        if key in doc:
            settings = settings.with_value(key, doc[key])
    return replace(settings, extra=extra)


def load_settings(path: Path) -> EngineSettings:
    """Defaults when the file does not exist; SettingsError when it is unreadable or invalid."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return EngineSettings()
    except OSError as exc:
        raise SettingsError("(file)", f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError("(file)", f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    return settings_from_dict(doc)


def save_settings(path: Path, settings: EngineSettings) -> None:
    """Atomic: write a temp file beside the target, fsync, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings.to_dict(), fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
