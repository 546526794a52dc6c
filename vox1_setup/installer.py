"""The transaction that changes a target interpreter: lock → journal → fetch → stash → pip → verify → commit,
and on ANY failure (Ctrl-C included) restore the before-state and prove it was restored.

The before-state is the target's installed distributions plus the flash-attn files by hash. It is restored
from a stash of the previous flash-attn's files (hard links where possible, so it costs no space) or, failing
that, by re-installing the cached wheel it came from; then it is read again and compared.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vox1_setup import subproc
from vox1_setup.cache import TRUST_FIRST_USE, TRUST_PINNED, WheelCache
from vox1_setup.download import RetryPolicy, Timeouts, download, local_path, sha256_file, source_kind
from vox1_setup.errors import (
    AbortedError,
    BadInputError,
    DownloadError,
    ExitCode,
    InstallError,
    RollbackError,
    VoxError,
)
from vox1_setup.journal import Action, Entry, Journal, Status, same_target, wait_for_test_pause
from vox1_setup.lock import target_lock
from vox1_setup.paths import Paths
from vox1_setup.verify import (
    TargetState,
    VerifyReport,
    flash_dist_from_dict,
    import_check,
    read_state,
    verify_error,
    verify_install,
)

log = logging.getLogger(__name__)

PIP_TIMEOUT_S = 900.0
DISK_MARGIN_BYTES = 64 * 1024 * 1024
FIRST_USE_MESSAGE = "checksum recorded on first download"

Note = Callable[[str], None]


@dataclass(frozen=True)
class WheelPlan:
    """What to install: where the wheel is, what it is called, and what it must hash to / report as version."""

    source: str  # https:// URL, loopback http:// URL, file:// URL or a path
    filename: str
    sha256: str | None
    base_version: str  # "2.8.3": the installed metadata must report this (an optional +local aside)
    size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "filename": self.filename, "sha256": self.sha256,
                "version": self.base_version, "size": self.size}


def free_bytes(path: Path) -> int | None:
    """Free space on the file system that holds `path` (or would hold it: the nearest existing parent)."""
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def space_shortfall(free: int | None, needed: int) -> bool:
    """True when `free` is known and below `needed` plus the margin (unknown free space never blocks)."""
    return free is not None and free < needed + DISK_MARGIN_BYTES


@dataclass(frozen=True)
class InstallOptions:
    allow_insecure_localhost: bool = False
    offline: bool = False
    wheelhouse: Path | None = None
    progress: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    lock_wait: float | None = None
    free_space: Callable[[Path], int | None] = field(default=free_bytes, compare=False)  # injectable for tests


@dataclass(frozen=True)
class FetchedWheel:
    path: Path
    sha256: str
    trust: str  # TRUST_PINNED | TRUST_FIRST_USE
    origin: str  # "cache" | "download" | "wheelhouse" | "file"
    first_use: bool  # this run recorded the hash (say so)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "trust": self.trust, "origin": self.origin,
                "first_use": self.first_use, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class Outcome:
    """The result of a committed change."""

    entry_id: str
    action: str
    python: str
    before_version: str | None
    after_version: str | None
    wheel: FetchedWheel | None
    verify: VerifyReport | None
    timings: Mapping[str, float]
    recovered: tuple[str, ...] = ()  # interrupted entries repaired first

    def to_dict(self) -> dict[str, Any]:
        return {"journal_entry": self.entry_id, "action": self.action, "python": self.python,
                "before_version": self.before_version, "after_version": self.after_version,
                "wheel": self.wheel.to_dict() if self.wheel else None,
                "verify": self.verify.to_dict() if self.verify else None,
                "timings": {k: round(v, 3) for k, v in self.timings.items()}, "recovered": list(self.recovered)}


def target_id(python: str) -> str:
    """How the journal and the lock name a target: its absolute path, symlinks kept (venvs link their python)."""
    return os.path.abspath(python)  # noqa: PTH100


# --------------------------------------------------------------------------------------------------------------
# Fetching the wheel (no change to the target)


def wheelhouse_checksum(wheelhouse: Path, filename: str) -> str | None:
    """`<file>.sha256` written by `vox1-setup download` beside each wheel."""
    side = wheelhouse / f"{filename}.sha256"
    try:
        text = side.read_text(encoding="utf-8").split()
    except OSError:
        return None
    return text[0].lower() if text else None


def fetch_wheel(plan: WheelPlan, paths: Paths, options: InstallOptions, note: Note,
                detail: Note | None = None) -> FetchedWheel:
    """The wheel file with a checked hash, from the cache, a wheelhouse, a local file or the network.

    `note` gets what the user should always see (the first-use checksum, once: when it is recorded);
    `detail` what only -v shows (a later match of that recorded checksum)."""
    t0 = time.perf_counter()
    cache = WheelCache(paths)
    kind = source_kind(plan.source, allow_insecure_localhost=options.allow_insecure_localhost)
    url = plan.source if kind != "file" else None
    expected = plan.sha256.lower() if plan.sha256 else None
    trust = TRUST_PINNED if expected else TRUST_FIRST_USE
    if expected is None and url:
        expected = cache.recorded_sha256(url, plan.filename)  # first-use hash: later copies must match it

    def done(path: Path, sha: str, origin: str, first_use: bool) -> FetchedWheel:
        if trust == TRUST_FIRST_USE and not first_use and detail is not None:
            when = cache.recorded_on(url, sha)
            detail(f"sha256 {sha[:12]}… matches the checksum recorded on first use"
                   + (f" on {when[:10]}" if when else ""))
        return FetchedWheel(path, sha, trust, origin, first_use, time.perf_counter() - t0)

    if expected:
        hit = cache.lookup(expected)
        if hit is not None:
            note(f"using cached {hit.filename} (sha256 {expected[:12]}…)")
            return done(hit.path, expected, "cache", False)

    local: tuple[Path, str] | None = None
    if options.wheelhouse is not None and (options.wheelhouse / plan.filename).is_file():
        local = (options.wheelhouse / plan.filename, "wheelhouse")
        side = wheelhouse_checksum(options.wheelhouse, plan.filename)
        if expected is None and side:
            expected, trust = side, TRUST_PINNED
    elif kind == "file":
        path = local_path(plan.source)
        if not path.is_file():
            raise BadInputError(f"wheel file not found: {path}", "check the path given to --wheel")
        local = (path, "file")
    if local is not None:
        path, origin = local
        sha = sha256_file(path)
        if expected and sha != expected:
            raise DownloadError(f"checksum mismatch for {path}: expected sha256 {expected}, got {sha}",
                                "the file is not the one that was pinned; nothing was installed")
        # A local file has no URL to record its hash under: the cache index is its record.
        first_use = not expected and not cache.known(sha)
        entry = cache.add(path, filename=plan.filename, sha256=sha, url=url, trust=trust, move=False)
        if first_use:
            note(f"{FIRST_USE_MESSAGE}: sha256 {sha} ({plan.filename})")
        return done(entry.path, sha, origin, first_use)

    if options.offline or url is None:
        where = f" or in {options.wheelhouse}" if options.wheelhouse else ""
        raise DownloadError(f"{plan.filename} is not in the cache{where}, and --offline forbids downloading it",
                            "fetch it on a connected machine with `vox1-setup download --dest DIR` and pass "
                            "--wheelhouse DIR")
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    free = options.free_space(cache.root)
    if plan.size and space_shortfall(free, plan.size):
        raise DownloadError(f"not enough free space in {cache.root} for {plan.filename}: "
                            f"{_mib(free or 0)} free, {_mib(plan.size + DISK_MARGIN_BYTES)} needed",
                            "free some space (or `vox1-setup cache clear`); nothing was changed")
    # Installs into two targets may fetch the same URL at once: one downloads, the other waits and uses it.
    with cache.download_lock(key, plan.filename):
        known = expected or cache.recorded_sha256(url, plan.filename)
        hit = cache.lookup(known) if known else None
        if hit is not None:
            note(f"using cached {hit.filename} (fetched by another vox1-setup meanwhile)")
            return done(hit.path, hit.sha256, "cache", False)
        note(f"downloading {plan.filename}")
        incoming = cache.incoming_dir() / key
        result = download(url, incoming / plan.filename, expected_sha256=expected, expected_size=plan.size,
                          policy=options.retry, timeouts=options.timeouts, progress=options.progress,
                          allow_insecure_localhost=options.allow_insecure_localhost)
        entry = cache.add(result.path, filename=plan.filename, sha256=result.sha256, url=url, trust=trust)
        shutil.rmtree(incoming, ignore_errors=True)
    first_use = expected is None
    if first_use:
        note(f"{FIRST_USE_MESSAGE}: sha256 {result.sha256} ({plan.filename}); later downloads must match it")
    return done(entry.path, result.sha256, "download", first_use)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"


def wheel_unpacked_size(path: Path) -> int:
    try:
        with zipfile.ZipFile(path) as zf:
            return sum(i.file_size for i in zf.infolist())
    except (OSError, zipfile.BadZipFile) as exc:
        raise InstallError(f"{path.name} is not a valid wheel (zip) file: {exc}",
                           "delete it from the cache (`vox1-setup cache clear`) and try again") from exc


def wheel_files(path: Path) -> set[str]:
    """Paths (relative to site-packages) a wheel puts there; empty when the file is unreadable."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return set()
    return {n for n in names if not n.endswith("/") and not n.split("/", 1)[0].endswith(".data")}


def wheel_top_names(path: Path) -> set[str]:
    """Top-level names a wheel puts into site-packages (to find leftovers of a killed pip)."""
    return {n.split("/", 1)[0] for n in wheel_files(path)}


# pip's AdjacentTempDirectory.LEADING_CHARS: a folder being replaced is renamed to "~" + some of these + the
# rest of its name (`flash_attn` -> `~lash_attn`, `~-ash_attn`, ..., or "~" + filler + the whole name).
PIP_TEMP_FILLER = frozenset("-~.=%0123456789")


def is_pip_temp_name(name: str, owned: set[str]) -> bool:
    """Is `name` pip's temporary rename of one of the `owned` top-level names (left behind by a killed pip)?"""
    if not name.startswith("~"):
        return False
    for real in owned:
        if len(real) < 2:
            continue
        if len(name) == len(real):
            if any(name[i:] == real[i:] and PIP_TEMP_FILLER.issuperset(name[1:i]) for i in range(1, len(real))):
                return True
        elif name.endswith(real) and PIP_TEMP_FILLER.issuperset(name[1:len(name) - len(real)]):
            return True
    return False


# --------------------------------------------------------------------------------------------------------------
# Stash and restore


def stash_files(state: TargetState, stash_dir: Path) -> dict[str, Any]:
    """Keep the current flash-attn's files (by RECORD) beside the journal entry; hard links when possible."""
    fa = state.flash_attn
    assert fa is not None
    stash_dir.mkdir(parents=True, exist_ok=True)
    mapping: dict[str, str] = {}
    for i, (rel, sha) in enumerate(sorted(fa.files.items())):
        if sha is None:
            continue
        src = Path(os.path.normpath(Path(fa.location) / rel))
        dst = stash_dir / f"{i:06d}"
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)
        mapping[rel] = dst.name
    (stash_dir / "stash.json").write_text(json.dumps({"location": fa.location, "files": mapping}, indent=1),
                                          encoding="utf-8")
    return {"kind": "stash", "dir": str(stash_dir), "count": len(mapping)}


def _restore_from_stash(stash_dir: Path, before: Mapping[str, Any]) -> None:
    doc = json.loads((stash_dir / "stash.json").read_text(encoding="utf-8"))
    location = Path(doc["location"])
    expected = before.get("files") or {}
    restored = {Path(os.path.normpath(location / rel)) for rel in doc["files"]}
    for rel, name in doc["files"].items():
        dst = Path(os.path.normpath(location / rel))
        if dst.suffix == ".py":
            # Copies keep the old mtime: bytecode compiled from the failed version could pass as fresh.
            for pyc in dst.parent.glob(f"__pycache__/{dst.stem}.*.pyc"):
                if pyc not in restored:
                    pyc.unlink(missing_ok=True)
        want = expected.get(rel)
        if dst.is_file() and want and sha256_file(dst) == want:
            continue
        if dst.exists() or dst.is_symlink():
            dst.unlink()  # never write into the old inode: it may be the stash's own hard link
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stash_dir / name, dst)


def _pip(python: str, *args: str) -> subproc.Completed:
    return subproc.run([python, "-m", "pip", *args, "--disable-pip-version-check", "--no-input"],
                       timeout=PIP_TIMEOUT_S, env={"PIP_NO_INPUT": "1", "PYTHONDONTWRITEBYTECODE": "1"})


def _remove_dist(python: str, state: TargetState, extra_top_names: set[str], owned: set[str]) -> None:
    """Take the current flash-attn out: pip uninstall, then leftovers of a killed pip: top-level names only the
    new wheel brought (`extra_top_names`), and pip's `~`-renamed copies of any flash-attn name (`owned`)."""
    fa = state.flash_attn
    if fa is not None:
        result = _pip(python, "uninstall", "-y", fa.name)
        if not result.ok:
            log.info("pip uninstall failed, removing by RECORD: %s", result.stderr[-500:])
            for rel in fa.files:
                p = Path(os.path.normpath(Path(fa.location) / rel))
                if p.is_file() or p.is_symlink():
                    p.unlink()
            if fa.dist_info:
                shutil.rmtree(fa.dist_info, ignore_errors=True)
    site = Path(state.purelib)
    if not site.is_dir():
        return
    names = {n for n in extra_top_names if n and n not in (".", "..")}
    for child in site.iterdir():
        leftover = child.name in names or is_pip_temp_name(child.name, names | owned)
        if not leftover:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def fingerprint_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """What differs between two fingerprints, in words (empty when identical)."""
    out = []
    bd, ad = before.get("distributions", {}), after.get("distributions", {})
    for name in sorted(set(bd) | set(ad)):
        if bd.get(name) != ad.get(name):
            out.append(f"{name}: {bd.get(name) or 'absent'} before, {ad.get(name) or 'absent'} now")
    bf, af = before.get("flash_attn") or {}, after.get("flash_attn") or {}
    if bf and af and bf.get("files") != af.get("files"):
        bfiles, afiles = bf.get("files", {}), af.get("files", {})
        changed = [k for k in sorted(set(bfiles) | set(afiles)) if bfiles.get(k) != afiles.get(k)]
        out.append(f"flash-attn files differ: {', '.join(changed[:5])}{' …' if len(changed) > 5 else ''}")
    if before.get("module_origin") != after.get("module_origin") and not out:
        out.append(f"`flash_attn` resolves to {after.get('module_origin')} instead of {before.get('module_origin')}")
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `timeout`, a closed terminal, a service stop) or, on Windows, SIGBREAK (Ctrl-Break, a closed
    console window): a KeyboardInterrupt, so it takes the very rollback path of Ctrl-C."""

    def __init__(self, signame: str) -> None:
        super().__init__(signame)
        self.signame = signame


def _stop_signals() -> list[signal.Signals]:
    """The signals that end a transaction like Ctrl-C does (SIGINT itself already raises KeyboardInterrupt).
    On Windows the C runtime reports a closed console window (CTRL_CLOSE_EVENT) as SIGBREAK."""
    names = ("SIGTERM", "SIGBREAK", "SIGHUP")
    return [sig for sig in (getattr(signal, n, None) for n in names) if isinstance(sig, signal.Signals)]


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signal.Signals(signum).name)


@contextlib.contextmanager
def cancel_on_stop_signals() -> Iterator[None]:
    """For the duration of a transaction, turn SIGTERM/SIGBREAK/SIGHUP into `Terminated`, so a killed run
    still rolls back instead of leaving an interrupted journal entry (only SIGKILL and power loss do that)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[signal.Signals, Any] = {}
    for sig in _stop_signals():
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # `nohup` and service managers ignore some of them on purpose: keep it that way
        previous[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """A second Ctrl-C (or SIGTERM) must not stop a rollback half-way: defer it until the rollback is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    sigs = [signal.SIGINT, *_stop_signals()]
    previous = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum)) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True)
class Restored:
    state: TargetState
    changed: bool  # False: the target was still in its before-state, nothing had to be undone
    import_error: str | None = None  # the restored flash-attn does not import (it is byte-identical to before)

    def describe(self) -> str:
        fa = self.state.flash_attn
        if not self.changed:
            return f"nothing had changed yet (flash-attn {fa.version if fa else 'absent'}, as before)"
        if fa is None:
            return "flash-attn is absent again, as before"
        if self.import_error:
            return (f"flash-attn {fa.version} is back, byte-identical to before, but it does not import "
                    f"({self.import_error}), presumably as before")
        return f"flash-attn {fa.version} is back, as before, and imports"


def restore(python: str, entry_doc: Mapping[str, Any], stash_dir: Path, paths: Paths, note: Note) -> Restored:
    """Bring the target back to the before-state recorded in `entry_doc`, and prove it: the same distributions
    and flash-attn files by hash (RollbackError if not), then `import flash_attn` again."""
    before = entry_doc.get("before") or {}
    fingerprint = before.get("fingerprint") or {}
    before_fa = flash_dist_from_dict(before.get("flash_attn"))
    current = read_state(python)
    if current.fingerprint() == fingerprint:
        return Restored(current, changed=False)
    new_files: set[str] = set()
    wheel_path = (entry_doc.get("wheel") or {}).get("path")
    if wheel_path and Path(wheel_path).is_file():
        new_files = wheel_files(Path(wheel_path))
    top_names = {n.split("/", 1)[0] for n in new_files}
    if current.flash_attn is not None:
        top_names |= {k.split("/", 1)[0] for k in current.flash_attn.files if not k.startswith("..")}
    keep = {k.split("/", 1)[0] for k in (before_fa.files if before_fa else {})}
    # Names the old version owns are restored from the stash, not deleted blindly (shared top-level dirs).
    current_differs = current.flash_attn is not None and (
        before_fa is None or current.fingerprint().get("flash_attn") != fingerprint.get("flash_attn"))
    if current_differs or top_names - keep or _has_pip_leftovers(current, top_names | keep):
        _remove_dist(python, current if current_differs else _without_fa(current), top_names - keep,
                     top_names | keep)
    _remove_stray_files(current, new_files, set(before_fa.files) if before_fa else set())
    if before_fa is not None:
        restored = False
        if (stash_dir / "stash.json").is_file():
            try:
                _restore_from_stash(stash_dir, before.get("flash_attn") or {})
                restored = True
            except (OSError, ValueError, KeyError) as exc:
                note(f"restoring from the stash failed ({exc}); trying the cached wheel")
        if not restored:
            wheel = (before.get("restore") or {}).get("wheel")
            path = Path(wheel["path"]) if wheel else None
            if path is None or not path.is_file():
                raise RollbackError(f"cannot restore flash-attn {before_fa.version}: its stash and its cached wheel "
                                    "are gone", _rollback_hint(python, before_fa.version))
            result = _pip(python, "install", "--no-deps", "--no-index", "--force-reinstall", str(path))
            if not result.ok:
                raise RollbackError(f"re-installing flash-attn {before_fa.version} failed:\n"
                                    f"{(result.stderr or result.stdout).strip()[-1500:]}",
                                    _rollback_hint(python, before_fa.version))
    after = read_state(python)
    diff = fingerprint_diff(fingerprint, after.fingerprint())
    if diff:
        raise RollbackError("the environment could not be restored exactly:\n  " + "\n  ".join(diff),
                            _rollback_hint(python, before_fa.version if before_fa else None))
    error = import_check(python, before_fa.version) if before_fa is not None else None
    return Restored(after, changed=True, import_error=error)


def _has_pip_leftovers(state: TargetState, names: set[str]) -> bool:
    site = Path(state.purelib)
    return site.is_dir() and any(is_pip_temp_name(child.name, names) for child in site.iterdir())


def _remove_stray_files(state: TargetState, new_files: set[str], keep: set[str]) -> None:
    """Files of the new wheel that the old version does not own: pip killed half-way through writing them
    leaves them with no RECORD to uninstall them by. Empty folders they leave are removed too."""
    for base in {Path(state.purelib), Path(state.platlib)}:
        dirs: set[Path] = set()
        for rel in new_files - keep:
            p = base / rel
            if p.is_file() or p.is_symlink():
                p.unlink()
                dirs.update(q for q in p.parents if base in q.parents)
        for d in sorted(dirs, key=lambda q: len(q.parts), reverse=True):
            with contextlib.suppress(OSError):
                pycache = d / "__pycache__"
                if pycache.is_dir() and not any(f.suffix != ".pyc" for f in pycache.iterdir()):
                    shutil.rmtree(pycache)
                d.rmdir()  # only when empty


def _without_fa(state: TargetState) -> TargetState:
    from dataclasses import replace

    return replace(state, flash_attn=None)


def _rollback_hint(python: str, version: str | None) -> str:
    what = f"reinstall flash-attn {version}" if version else "remove flash-attn"
    return (f"run `vox1-setup rollback --python \"{python}\"` to retry; if that fails too, {what} by hand "
            f"(`\"{python}\" -m pip …`) or `vox1-setup uninstall` so VOX-1 falls back to sdpa")


# --------------------------------------------------------------------------------------------------------------
# Transactions


def before_doc(state: TargetState) -> dict[str, Any]:
    return {"flash_attn": state.flash_attn_dict(), "fingerprint": state.fingerprint(),
            "purelib": state.purelib}


def _cached_wheel_for(journal: Journal, paths: Paths, python: str, version: str) -> dict[str, Any] | None:
    """The cached wheel the currently installed version came from (a second way to restore it)."""
    for entry in journal.entries():
        doc = entry.doc
        if (same_target(doc.get("python"), python) and doc.get("action") == Action.INSTALL.value
                and doc.get("status") == Status.COMMITTED.value and (doc.get("plan") or {}).get("version") == version):
            sha = (doc.get("wheel") or {}).get("sha256")
            hit = WheelCache(paths).lookup(sha, check=False) if sha else None
            if hit is not None:
                return {"path": str(hit.path), "sha256": hit.sha256}
            return None
    return None


def _prepare_restore(entry: Entry, journal: Journal, paths: Paths, python: str, state: TargetState) -> None:
    fa = state.flash_attn
    if fa is None:
        entry.update(before={**entry.doc["before"], "restore": {"kind": "absent"}})
        return
    wheel = _cached_wheel_for(journal, paths, python, fa.version)
    if not fa.has_record and wheel is None:
        raise InstallError(f"the installed flash-attn {fa.version} has no RECORD file (not installed by pip?), so "
                           "it could not be restored if this change failed",
                           "remove it with the tool that installed it (e.g. conda), then run this again; nothing "
                           "was changed")
    info = stash_files(state, entry.stash_dir)
    if wheel:
        info["wheel"] = wheel
    entry.update(before={**entry.doc["before"], "restore": info})


def _recover_interrupted(journal: Journal, paths: Paths, python: str, note: Note) -> tuple[str, ...]:
    done = []
    for entry in journal.interrupted(python):
        note(f"an interrupted {entry.doc.get('action')} (journal entry {entry.id}) is rolled back first")
        try:
            restored = restore(python, entry.doc, entry.stash_dir, paths, note)
        except VoxError as exc:
            entry.finish(Status.ROLLBACK_FAILED, outcome={"message": f"recovery failed: {exc.message}"})
            raise
        entry.finish(Status.ROLLED_BACK, outcome={"message": f"interrupted; rolled back later: {restored.describe()}",
                                                  "recovered": True})
        done.append(entry.id)
    return tuple(done)


def _robust(note: Note) -> Note:
    """A closed terminal makes writing to it fail (EIO): the rollback must go on regardless."""
    def safe(message: str) -> None:
        with contextlib.suppress(OSError):
            note(message)

    return safe


def _fail(entry: Entry, exc: BaseException, python: str, paths: Paths, note: Note) -> VoxError:
    """Roll back after a failure and return the error to raise (its message says what was restored)."""
    if isinstance(exc, VoxError):
        error = exc
    elif isinstance(exc, Terminated):
        error = AbortedError(f"terminated ({exc.signame})", "run the command again when you are ready")
    elif isinstance(exc, KeyboardInterrupt):
        error = AbortedError("interrupted (Ctrl-C)", "run the command again when you are ready")
    else:
        error = VoxError(f"unexpected error: {type(exc).__name__}: {exc}",
                         "this is a bug in vox1-setup; rerun with --verbose and report it", exit_code=ExitCode.INTERNAL)
    note = _robust(note)
    note("rolling back…")
    with _no_interrupt():
        try:
            restored = restore(python, entry.doc, entry.stash_dir, paths, note)
        except VoxError as rb:
            entry.finish(Status.ROLLBACK_FAILED, outcome={"message": error.message, "exit_code": int(error.exit_code),
                                                          "rollback_error": rb.message})
            return RollbackError(f"{error.message}\nand the rollback failed: {rb.message}", rb.hint)
        except BaseException as rb:
            entry.finish(Status.ROLLBACK_FAILED, outcome={"message": error.message,
                                                          "rollback_error": f"{type(rb).__name__}: {rb}"})
            return RollbackError(f"{error.message}\nand the rollback failed: {type(rb).__name__}: {rb}",
                                 _rollback_hint(python, None))
    text = f"rolled back: {restored.describe()} (verified by file hashes)"
    entry.finish(Status.ROLLED_BACK, outcome={"message": error.message, "exit_code": int(error.exit_code),
                                              "restored": restored.describe()})
    return type(error)(f"{error.message}\n{text}", error.hint, exit_code=error.exit_code)


def pip_failure_hint(text: str, python: str) -> str | None:
    """What to do about pip's error text: the FIELD-NOTES §5 table first, then pip's own usual failures."""
    if "No module named pip" in text:
        return f"this Python has no pip: run `\"{python}\" -m ensurepip`, then install again"
    if any(t in text for t in ("WinError 32", "WinError 5]", "Access is denied")):
        return ("a running program (VOX-1 itself?) has flash-attn's files open, and Windows does not let them be "
                "replaced: close it and run this again")
    from vox1_setup.verify import explain_text

    d = explain_text(text)
    return f"{str(d.get('summary')).rstrip('.')}. {d.get('fix')}" if d else None


def _step(entry: Entry, name: str, **detail: Any) -> None:
    entry.step(name, **detail)
    wait_for_test_pause(name)


def install(python: str, plan: WheelPlan, *, paths: Paths, options: InstallOptions, note: Note,
            detail: Note | None = None) -> Outcome:
    """Install `plan` into `python` safely. Raises a VoxError (after rolling back) on failure."""
    python = target_id(python)
    journal = Journal(paths)
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with cancel_on_stop_signals(), target_lock(paths, python, wait=options.lock_wait):
        wait_for_test_pause("locked")
        recovered = _recover_interrupted(journal, paths, python, note)
        before = read_state(python)
        if before.flash_attn is not None:
            note(f"replacing flash-attn {before.flash_attn.version} (kept for rollback)")
        entry = journal.begin(Action.INSTALL, python, before=before_doc(before), plan=plan.to_dict())
        try:
            _step(entry, "journaled")
            fetched = fetch_wheel(plan, paths, options, note, detail)
            timings["fetch"] = fetched.seconds
            entry.update(wheel=fetched.to_dict())
            _step(entry, "downloaded", origin=fetched.origin, sha256=fetched.sha256, trust=fetched.trust)
            needed = wheel_unpacked_size(fetched.path)
            free = options.free_space(Path(before.purelib))
            if space_shortfall(free, needed):
                raise InstallError(f"not enough free space in {before.purelib} to unpack {plan.filename}: "
                                   f"{_mib(free or 0)} free, {_mib(needed + DISK_MARGIN_BYTES)} needed",
                                   "free some space on that drive and run this again; nothing was changed")
            _prepare_restore(entry, journal, paths, python, before)
            _step(entry, "stashed")
            t = time.perf_counter()
            result = _pip(python, "install", "--no-deps", "--no-index", "--force-reinstall", str(fetched.path))
            timings["pip"] = time.perf_counter() - t
            if not result.ok:
                text = (result.stderr or result.stdout).strip()[-2000:]
                hint = pip_failure_hint(text, python)
                raise InstallError(f"pip could not install {plan.filename}:\n{text}", hint)
            _step(entry, "installed", seconds=round(timings["pip"], 3))
            report = verify_install(python, plan.base_version)
            timings["verify"] = report.seconds
            entry.update(verify=report.to_dict())
            _step(entry, "verified", ok=report.ok, functional=report.functional_summary())
            if not report.ok:
                raise verify_error(report)
        except BaseException as exc:
            err = _fail(entry, exc, python, paths, note)
            raise err from (exc if isinstance(exc, Exception) else None)
        timings["total"] = time.perf_counter() - t_start
        installed = str((report.raw.get("version") or {}).get("installed") or plan.base_version)
        entry.finish(Status.COMMITTED, after={"flash_attn_version": installed},
                     outcome={"message": f"installed flash-attn {installed}"}, timings=timings)
        _prune_stashes(journal)
        return Outcome(entry.id, Action.INSTALL.value, python, before.flash_attn.version if before.flash_attn else None,
                       installed, fetched, report, timings, recovered)


def uninstall(python: str, *, paths: Paths, note: Note, lock_wait: float | None = None) -> Outcome | None:
    """Remove flash-attn (journaled, so `rollback` can bring it back). None when it is not installed."""
    python = target_id(python)
    journal = Journal(paths)
    t0 = time.perf_counter()
    with cancel_on_stop_signals(), target_lock(paths, python, wait=lock_wait):
        recovered = _recover_interrupted(journal, paths, python, note)
        before = read_state(python)
        if before.flash_attn is None:
            return None
        entry = journal.begin(Action.UNINSTALL, python, before=before_doc(before), plan={"version": None})
        try:
            _prepare_restore(entry, journal, paths, python, before)
            _step(entry, "stashed")
            _remove_dist(python, before, set(), set())
            _step(entry, "removed")
            after = read_state(python)
            if after.flash_attn is not None or after.module_origin:
                raise InstallError(f"flash-attn is still importable after uninstalling ({after.module_origin})",
                                   "another copy sits on the target's sys.path (a .pth file, PYTHONPATH, the user "
                                   "site): remove that one by hand; this one was put back")
        except BaseException as exc:
            err = _fail(entry, exc, python, paths, note)
            raise err from (exc if isinstance(exc, Exception) else None)
        entry.finish(Status.COMMITTED, after={"flash_attn": None},
                     outcome={"message": f"removed flash-attn {before.flash_attn.version}"})
        _prune_stashes(journal)
        return Outcome(entry.id, Action.UNINSTALL.value, python, before.flash_attn.version, None, None, None,
                       {"total": time.perf_counter() - t0}, recovered)


def rollback(python: str | None, *, to: str | None, paths: Paths, note: Note,
             lock_wait: float | None = None) -> Outcome:
    """Repair an interrupted change, or undo the last (or a given) committed change of `python`."""
    journal = Journal(paths)
    t0 = time.perf_counter()
    if to is None:
        pending = journal.interrupted(target_id(python) if python else None)
        if pending:
            target = str(pending[0].doc["python"])
            with cancel_on_stop_signals(), target_lock(paths, target, wait=lock_wait):
                recovered = _recover_interrupted(journal, paths, target, note)
                state = read_state(target)
            fa = state.flash_attn
            return Outcome(recovered[0] if recovered else pending[0].id, "recover", target, None,
                           fa.version if fa else None, None, None, {"total": time.perf_counter() - t0}, recovered)
    if to is not None:
        undo = journal.load(to)
    else:
        # Without --python: the newest change of any target (the journal knows which one it was).
        found = journal.last_committed(target_id(python) if python else None)
        if found is None:
            where = f" for {target_id(python)}" if python else ""
            raise BadInputError(f"nothing to roll back{where}: no committed change in the journal",
                                "see `vox1-setup history`")
        undo = found
    if undo.status != Status.COMMITTED.value:
        raise BadInputError(f"journal entry {undo.id} is {undo.status}; only a committed change can be undone",
                            "see `vox1-setup history`")
    target = str(undo.doc["python"])
    if python is not None and not same_target(target_id(python), target):
        raise BadInputError(f"journal entry {undo.id} changed {target}, not {target_id(python)}",
                            f"drop --python, or pass --python \"{target}\"")
    with cancel_on_stop_signals(), target_lock(paths, target, wait=lock_wait):
        current = read_state(target)
        goal = undo.doc.get("before") or {}
        goal_fa = (goal.get("flash_attn") or {}).get("version")
        entry = journal.begin(Action.ROLLBACK, target, before=before_doc(current),
                              plan={"undo": undo.id, "version": goal_fa})
        try:
            _prepare_restore(entry, journal, paths, target, current)
            _step(entry, "stashed")
            restored = restore(target, undo.doc, undo.stash_dir, paths, note)
            state = restored.state
            _step(entry, "restored")
        except BaseException as exc:
            err = _fail(entry, exc, target, paths, note)
            raise err from (exc if isinstance(exc, Exception) else None)
        if restored.import_error:
            note(f"note: {restored.describe()}")
        entry.finish(Status.COMMITTED, after={"flash_attn": state.flash_attn_dict()},
                     outcome={"message": f"undid {undo.id}: {restored.describe()}"})
        undo.finish(Status.UNDONE, undone_by=entry.id)
        return Outcome(entry.id, Action.ROLLBACK.value, target,
                       current.flash_attn.version if current.flash_attn else None,
                       state.flash_attn.version if state.flash_attn else None, None, None,
                       {"total": time.perf_counter() - t0})


KEEP_STASHES = 10


def _prune_stashes(journal: Journal) -> None:
    """Stashes hold real bytes once pip replaced the originals: keep those of the last few entries only."""
    for old in journal.ids()[KEEP_STASHES:]:
        shutil.rmtree(journal.root / old, ignore_errors=True)
