"""Look inside the target interpreter: its installed state (stdlib only) and the verification of flash-attn.

Both run `verify_script.py` by path in a fresh subprocess of the target, so nothing the tool imported (and no
half-loaded extension) can influence the answer, and the CLI process never imports torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vox1_setup import subproc
from vox1_setup.errors import BadInputError, ExitCode, VoxError

SCRIPT = Path(__file__).with_name("verify_script.py")
STATE_TIMEOUT_S = 120.0  # hashing a 250 MB extension on a slow disk
VERIFY_TIMEOUT_S = 300.0  # first torch import on a cold Windows disk can take a minute


@dataclass(frozen=True)
class FlashDist:
    name: str
    version: str
    location: str
    dist_info: str | None
    has_record: bool
    installer: str | None
    files: Mapping[str, str | None]  # path relative to `location` (as in RECORD) -> sha256 (None: missing)

    def content(self) -> dict[str, str | None]:
        """Files that identify the installation: bytecode caches are regenerated at will and left out."""
        return {k: v for k, v in self.files.items() if "__pycache__/" not in k and not k.endswith(".pyc")}


@dataclass(frozen=True)
class TargetState:
    executable: str
    purelib: str
    platlib: str
    scripts: str
    free_bytes: int | None
    distributions: Mapping[str, str]  # normalised name -> version
    flash_attn: FlashDist | None
    module_origin: str | None = None  # where `import flash_attn` would load from (found, not imported)

    def fingerprint(self) -> dict[str, Any]:
        """What must be identical before an install and after its rollback."""
        fa = self.flash_attn
        return {"distributions": dict(sorted(self.distributions.items())),
                "flash_attn": None if fa is None else {"version": fa.version, "files": fa.content()},
                "module_origin": self.module_origin}

    def flash_attn_dict(self) -> dict[str, Any] | None:
        fa = self.flash_attn
        if fa is None:
            return None
        return {"name": fa.name, "version": fa.version, "location": fa.location, "dist_info": fa.dist_info,
                "has_record": fa.has_record, "installer": fa.installer, "files": dict(fa.files)}


def flash_dist_from_dict(doc: Mapping[str, Any] | None) -> FlashDist | None:
    if not doc:
        return None
    return FlashDist(name=str(doc["name"]), version=str(doc["version"]), location=str(doc["location"]),
                     dist_info=doc.get("dist_info"), has_record=bool(doc.get("has_record")),
                     installer=doc.get("installer"), files=dict(doc.get("files") or {}))


def _last_json(stdout: str) -> dict[str, Any] | None:
    for raw_line in reversed(stdout.strip().splitlines()):
        line = raw_line.strip()
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                return None
            return doc if isinstance(doc, dict) else None
    return None


def read_state(python: str, *, timeout: float = STATE_TIMEOUT_S) -> TargetState:
    result = subproc.run([python, str(SCRIPT), "state"], timeout=timeout, env={"PYTHONDONTWRITEBYTECODE": "1"})
    doc = _last_json(result.stdout) if result.ok else None
    if doc is None:
        tail = (result.stderr or result.stdout).strip()[-800:]
        raise BadInputError(f"cannot inspect the target interpreter {python}: {tail or 'no output'}",
                            "pass --python with the path of a working Python 3 (VOX-1's system_python)")
    return TargetState(
        executable=str(doc["executable"]), purelib=str(doc["purelib"]), platlib=str(doc["platlib"]),
        scripts=str(doc["scripts"]), free_bytes=doc.get("free_bytes"),
        distributions={str(k): str(v) for k, v in (doc.get("distributions") or {}).items()},
        flash_attn=flash_dist_from_dict(doc.get("flash_attn")), module_origin=doc.get("module_origin"),
    )


@dataclass(frozen=True)
class VerifyReport:
    raw: Mapping[str, Any]
    seconds: float
    crash: str | None = None  # the verify process died (segfault, abort, timeout)
    diagnosis: Mapping[str, Any] | None = field(default=None)

    @property
    def functional(self) -> Mapping[str, Any]:
        return dict(self.raw.get("functional") or {})

    @property
    def functional_status(self) -> str:
        return str(self.functional.get("status", "not-run"))

    @property
    def ok(self) -> bool:
        r = self.raw
        return (self.crash is None and bool(r.get("import", {}).get("ok")) and bool(r.get("cuda_ext", {}).get("ok"))
                and bool(r.get("version", {}).get("ok")) and self.functional_status != "failed")

    def problems(self) -> list[str]:
        """Each failed check in words (empty when ok)."""
        out = []
        if self.crash:
            out.append(self.crash)
        r = self.raw
        if r and not r.get("import", {}).get("ok"):
            out.append(f"`import flash_attn` failed: {r['import'].get('error')}")
        elif r and not r.get("cuda_ext", {}).get("ok"):
            out.append(f"`import flash_attn_2_cuda` failed: {r['cuda_ext'].get('error')}")
        v = r.get("version") or {}
        if r and not v.get("ok"):
            out.append(f"installed version {v.get('installed')} is not the expected {v.get('expected')}")
        if self.functional_status == "failed":
            bad = [c for c in self.functional.get("cases", []) if not c.get("ok")]
            for c in bad[:3]:
                what = c.get("error") or f"max abs error {c.get('max_abs_err'):.3g} > tolerance {c.get('tolerance')}"
                out.append(f"flash_attn_func gave wrong results ({c.get('dtype')}, head_dim {c.get('head_dim')}, "
                           f"causal={c.get('causal')}): {what}")
            if not bad:
                out.append(f"functional check failed: {self.functional.get('reason')}")
        return out

    def functional_summary(self) -> str:
        f = self.functional
        status = self.functional_status
        if status == "not-run":
            return f"not run: {f.get('reason') or 'unknown reason'}"
        cases = f.get("cases", [])
        worst = max((c.get("max_abs_err") or 0.0 for c in cases), default=0.0)
        gpu = f.get("gpu") or {}
        where = f"{gpu.get('name')} (sm {gpu.get('capability')})" if f.get("device") == "cuda" and gpu else \
            f.get("device")
        ms = sum(c.get("ms") or 0.0 for c in cases)
        return f"{status} on {where} ({len(cases)} cases, max abs error {worst:.2e}, {ms:.1f} ms in all)"

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 3), "crash": self.crash,
                "problems": self.problems(), "functional_summary": self.functional_summary(),
                "diagnosis": dict(self.diagnosis) if self.diagnosis else None, "report": dict(self.raw)}


def explain_text(text: str) -> dict[str, Any] | None:
    """The cause and fix for an error text (FIELD-NOTES §5), when the diagnosis module knows it."""
    try:
        from vox1_setup.diagnose import explain
    except ImportError:
        return None
    found: Any = explain(text)
    if found is None:
        return None
    keys = ("cause", "id", "cause_id", "summary", "fix")
    return {k: getattr(found, k) for k in keys if isinstance(getattr(found, k, None), str)}


def verify_install(python: str, expected_version: str, *, timeout: float = VERIFY_TIMEOUT_S) -> VerifyReport:
    import time

    t0 = time.perf_counter()
    result = subproc.run([python, str(SCRIPT), "verify", "--expect", expected_version], timeout=timeout)
    seconds = time.perf_counter() - t0
    doc = _last_json(result.stdout)
    crash = None
    if result.timed_out:
        crash = f"verification did not finish within {timeout:.0f} s"
    elif doc is None or result.returncode != 0:
        tail = (result.stderr or result.stdout).strip()[-1500:]
        crash = f"the verification process died (exit {result.returncode}): {tail or 'no output'}"
    report = VerifyReport(raw=doc or {}, seconds=seconds, crash=crash)
    if not report.ok:
        report = VerifyReport(raw=report.raw, seconds=seconds, crash=crash,
                              diagnosis=explain_text("\n".join(report.problems())))
    return report


def import_check(python: str, expected_version: str, *, timeout: float = VERIFY_TIMEOUT_S) -> str | None:
    """After a rollback: does the restored flash-attn import again? None if it does, else the error text."""
    result = subproc.run([python, str(SCRIPT), "verify", "--expect", expected_version, "--import-only"],
                         timeout=timeout)
    doc = _last_json(result.stdout)
    if doc is None:
        return f"the import check died (exit {result.returncode})"
    report = VerifyReport(raw=doc, seconds=0.0)
    problems = report.problems()
    return "; ".join(problems) if problems else None


def verify_error(report: VerifyReport) -> VoxError:
    problems = report.problems()
    message = "the installed flash-attn failed verification:\n  " + "\n  ".join(problems)
    hint = None
    if report.diagnosis:
        d = report.diagnosis
        cause = d.get("summary") or d.get("cause") or d.get("id")
        hint = f"{str(cause).rstrip('.')}. {d.get('fix')}" if d.get("fix") else str(cause)
    return VoxError(message, hint or "run `vox1-setup doctor` for the full picture", exit_code=ExitCode.VERIFY_FAILED)
