"""The Activity Log: timestamped lines to the console and (optionally) appended to a file.

Users read it to learn what the engine really did ("✅ Flash Attention 2 enabled successfully", or why it
fell back), so every decision goes through here. Lines are also kept in memory for reports and tests.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TextIO


class ActivityLog:
    def __init__(self, path: Path | None = None, *, console: TextIO | None = None, echo: bool = True,
                 clock: Callable[[], datetime] = datetime.now) -> None:
        self.path = path
        self._console = console
        self._echo = echo
        self._clock = clock
        self._lock = threading.Lock()
        self.lines: list[str] = []
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, message: str) -> None:
        now = self._clock()
        with self._lock:
            self.lines.append(message)
            if self._echo:
                stream = self._console if self._console is not None else sys.stderr
                try:
                    stream.write(f"[{now:%H:%M:%S}] {message}\n")
                    stream.flush()
                except UnicodeEncodeError:  # a legacy Windows console cannot print ✅/⚠️
                    stream.write(f"[{now:%H:%M:%S}] {message.encode('ascii', 'replace').decode()}\n")
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as fh:
                    fh.write(f"{now:%Y-%m-%d %H:%M:%S} {message}\n")

    __call__ = write
