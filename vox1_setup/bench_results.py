"""The last `vox1-setup bench` report, kept so the wizard and doctor can use a measured recommendation.

`vox1-setup bench` stores its `vox1-bench/1` document (plus the target interpreter and the time) at
`<data>/bench/last.json`. `last_recommendation()` reads it back as a small value; a missing, unreadable or
foreign file is simply "no measurement" (the bench is optional, it never blocks another command).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vox1_setup.journal import atomic_write_json, utc_now
from vox1_setup.paths import Paths

BENCH_SCHEMA = "vox1-bench/1"
REAL_GEOMETRY_PRESET = "qwen3-tts-talker"  # only its batch size means something for VOX-1's model


def last_bench_file(paths: Paths) -> Path:
    return paths.data / "bench" / "last.json"


@dataclass(frozen=True)
class BenchRecommendation:
    attention_implementation: str
    batch_size: int | None  # None: measured on a stand-in model (CPU, tiny preset), not VOX-1's geometry
    reason: str
    preset: str
    device_name: str | None
    python: str | None
    measured_at: str | None

    def to_dict(self) -> dict[str, object]:
        return {"attention_implementation": self.attention_implementation, "batch_size": self.batch_size,
                "reason": self.reason, "preset": self.preset, "device_name": self.device_name,
                "python": self.python, "measured_at": self.measured_at}


def save_last(paths: Paths, doc: dict[str, Any]) -> Path:
    path = last_bench_file(paths)
    atomic_write_json(path, {**doc, "measured_at": utc_now()})
    return path


def recommendation_from(doc: Any) -> BenchRecommendation | None:
    """Pure: the recommendation of a `vox1-bench/1` document, or None."""
    if not isinstance(doc, dict) or doc.get("schema") != BENCH_SCHEMA:
        return None
    rec, preset = doc.get("recommendation"), doc.get("preset")
    if not isinstance(rec, dict) or not isinstance(preset, dict) or not isinstance(rec.get("attention_implementation"),
                                                                                   str):
        return None
    real = preset.get("name") == REAL_GEOMETRY_PRESET and isinstance(rec.get("batch_size"), int)
    return BenchRecommendation(
        attention_implementation=rec["attention_implementation"],
        batch_size=int(rec["batch_size"]) if real else None,
        reason=str(rec.get("reason", "")),
        preset=str(preset.get("name")),
        device_name=doc.get("device_name") if isinstance(doc.get("device_name"), str) else None,
        python=doc.get("target_python") if isinstance(doc.get("target_python"), str) else None,
        measured_at=doc.get("measured_at") if isinstance(doc.get("measured_at"), str) else None,
    )


def last_recommendation(paths: Paths) -> BenchRecommendation | None:
    try:
        doc = json.loads(last_bench_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recommendation_from(doc)
