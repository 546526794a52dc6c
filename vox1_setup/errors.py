"""One error type for everything the user should read, and the documented exit codes.

The CLI's top level turns a `VoxError` into its message, its hint and its exit code; anything else is a
bug and exits with `ExitCode.INTERNAL` (traceback only with --verbose).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented in README.md ("Exit codes"). Never renumber: scripts and the .bat launchers rely on them."""

    OK = 0
    INTERNAL = 1  # a bug: please report it with --verbose output
    BAD_INPUT = 2  # bad option, unreadable/malformed file, target that is not a Python
    NO_WHEEL = 3  # no prebuilt wheel fits this machine (resolve/install/download)
    DOWNLOAD_FAILED = 4  # network error, HTTP error or checksum mismatch; nothing was changed
    INSTALL_FAILED = 5  # pip failed; the environment was rolled back
    VERIFY_FAILED = 6  # installed wheel failed to import or computed wrong numbers; rolled back
    ROLLBACK_FAILED = 7  # the environment could not be restored: read the message, run `vox1-setup rollback`
    LOCKED = 8  # another vox1-setup is changing this interpreter
    CHECKS_FAILED = 9  # doctor found at least one failing check
    INTERRUPTED_STATE = 10  # an interrupted install was found; run `vox1-setup rollback` first
    NOT_SUPPORTED = 11  # asked for something this machine cannot do (e.g. forced FA2 on a Turing GPU)
    CHUNKS_FAILED = 12  # the engine finished but some chunks failed even at batch 1 (listed in its report)
    ABORTED = 130  # Ctrl-C or a declined confirmation; anything changed was rolled back


class VoxError(Exception):
    """An error meant for the user: what went wrong (message) and what to do next (hint)."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str | None = None, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class BadInputError(VoxError):
    exit_code = ExitCode.BAD_INPUT


class NoWheelError(VoxError):
    exit_code = ExitCode.NO_WHEEL


class DownloadError(VoxError):
    exit_code = ExitCode.DOWNLOAD_FAILED


class InstallError(VoxError):
    exit_code = ExitCode.INSTALL_FAILED


class VerifyError(VoxError):
    exit_code = ExitCode.VERIFY_FAILED


class RollbackError(VoxError):
    exit_code = ExitCode.ROLLBACK_FAILED


class LockedError(VoxError):
    exit_code = ExitCode.LOCKED


class NotSupportedError(VoxError):
    exit_code = ExitCode.NOT_SUPPORTED


class AbortedError(VoxError):
    exit_code = ExitCode.ABORTED
