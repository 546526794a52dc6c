"""Errors the engine shows to people: a message, a hint, and an exit code for `python -m engine`.

The engine does not import `vox1_setup` (it runs inside VOX-1's interpreter, which may only have `engine`
on its path), so the exit codes repeat the numbers of `vox1_setup.errors.ExitCode` where the meaning is
the same. `CHUNKS_FAILED` is the engine's own: the run finished but the report lists chunks that failed.
"""

from __future__ import annotations

from enum import IntEnum

_TRANSFORMERS_PREFACE = "cannot be used due to the following error:"


class EngineExit(IntEnum):
    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2  # same number as ExitCode.BAD_INPUT
    NOT_SUPPORTED = 11  # same number as ExitCode.NOT_SUPPORTED (e.g. forced FA2 on a Turing GPU)
    CHUNKS_FAILED = 12  # finished, but at least one chunk failed even at batch size 1 (listed in the report)


class EngineError(Exception):
    """An error meant for the user: what went wrong and what to do next."""

    exit_code: EngineExit = EngineExit.INTERNAL

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"

    def to_dict(self) -> dict[str, object]:
        return {"kind": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": int(self.exit_code)}


class EngineInputError(EngineError):
    exit_code = EngineExit.BAD_INPUT


class AttentionUnavailableError(EngineError):
    """A forced attention implementation failed one of its checks (or failed to load)."""

    exit_code = EngineExit.NOT_SUPPORTED

    def __init__(self, impl: str, check: str, reason: str, fix: str | None) -> None:
        super().__init__(f"attention_implementation={impl} cannot be used: {check} check failed: {reason}", fix)
        self.impl = impl
        self.check = check
        self.reason = reason


class ModelLoadError(EngineError):
    """Every allowed attention implementation failed to load or to run one forward step."""

    exit_code = EngineExit.NOT_SUPPORTED


def short_error(exc: BaseException) -> str:
    """The useful part of an exception: transformers' 'cannot be used due to…' tail, else the first line."""
    text = str(exc).strip()
    if _TRANSFORMERS_PREFACE in text:
        text = text.split(_TRANSFORMERS_PREFACE, 1)[1].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
