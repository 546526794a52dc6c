"""The one place that runs external commands (probe, pip, nvidia-smi, verify)."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vox1_setup.errors import ExitCode, VoxError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completed:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run(
    args: Sequence[str],
    *,
    timeout: float | None = 60.0,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    cwd: str | None = None,
) -> Completed:
    """Run a command, never raising on a bad exit; a missing executable or timeout is reported in the result."""
    argv = tuple(str(a) for a in args)
    log.debug("run: %s (timeout %s)", argv, timeout)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=full_env,
            input=input_text,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        return Completed(argv, 127, "", str(exc))
    except PermissionError as exc:
        return Completed(argv, 126, "", str(exc))
    except OSError as exc:  # e.g. exec format error: not a program at all
        return Completed(argv, 126, "", str(exc))
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode("utf-8", "replace")
        err = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode("utf-8", "replace")
        return Completed(argv, -1, out, err, timed_out=True)
    log.debug("exit %s; stderr tail: %s", proc.returncode, proc.stderr[-500:])
    return Completed(argv, proc.returncode, proc.stdout, proc.stderr)


def check(result: Completed, what: str, hint: str | None = None, exit_code: ExitCode = ExitCode.INTERNAL) -> str:
    """Turn a failed `Completed` into a VoxError; return stdout when it succeeded."""
    if result.timed_out:
        raise VoxError(f"{what} timed out", hint, exit_code=exit_code)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-2000:]
        raise VoxError(f"{what} failed (exit {result.returncode}):\n{tail}", hint, exit_code=exit_code)
    return result.stdout


def run_attached(args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None) -> int:
    """Run a long-lived program on this console (inherited stdin/stdout/stderr) and return its exit code.

    For hand-offs such as `vox1-setup run`: the user watches the program's own output. Ctrl-C reaches the
    child through the shared console; we wait for it to finish instead of leaving it orphaned."""
    argv = tuple(str(a) for a in args)
    log.debug("run attached: %s", argv)
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd)
    except FileNotFoundError:
        return 127
    except OSError:
        return 126
    interrupts = 0
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            # The child got the same Ctrl-C and normally ends on its own; a second one stops it for good.
            interrupts += 1
            if interrupts == 2:
                proc.terminate()
            elif interrupts > 2:
                proc.kill()
