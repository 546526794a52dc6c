"""Real virtual environments as target interpreters, built fast.

A venv is created `--without-pip`; pip and (optionally) the real CPU torch are made importable through a
`.pth` file pointing at read-only copies/locations, so each venv costs a fraction of a second while its
own site-packages stays private (what vox1-setup installs or removes lands there and nowhere else).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path


def _venv_python(root: Path) -> Path:
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def site_packages(root: Path) -> Path:
    py = _venv_python(root)
    out = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def pip_share(base: Path) -> Path:
    """A folder holding only pip (copied from the running interpreter), shared by all test venvs."""
    import pip

    dest = base / "pip-share"
    if not (dest / "pip").exists():
        shutil.copytree(Path(pip.__file__).parent, dest / "pip",
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def torch_share() -> Path | None:
    """The site-packages dir where the test runner's real torch lives (None when torch is absent)."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent.parent


def make_venv(root: Path, *, pip: bool = True, real_torch: bool = False, share_base: Path | None = None) -> Path:
    """Create a venv at `root` and return its python. `real_torch` exposes the runner's CPU torch (and its
    dependencies) read-only through a .pth: imports work, installs still go to the venv's own site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    py = _venv_python(root)
    sp = site_packages(root)
    lines = []
    if pip:
        lines.append(str(pip_share(share_base or root.parent)))
    if real_torch:
        share = torch_share()
        if share is None:
            raise RuntimeError("real torch requested but torch is not installed in the test runner")
        lines.append(str(share))
    if lines:
        # Appended after the venv's own site-packages, so the venv's packages shadow the shared ones.
        (sp / "zz_vox1_test_share.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return py


def write_fixture_package(site: Path, name: str, files: dict[str, str], version: str,
                          dist_name: str | None = None) -> None:
    """A minimal installed distribution (package files + dist-info with METADATA and RECORD)."""
    dist = dist_name or name
    for rel, text in files.items():
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    norm = dist.replace("-", "_")
    info = site / f"{norm}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    (info / "INSTALLER").write_text("pip\n", encoding="utf-8")
    record = [f"{rel},," for rel in files] + [f"{info.name}/METADATA,,", f"{info.name}/INSTALLER,,",
                                              f"{info.name}/RECORD,,"]
    (info / "RECORD").write_text("\n".join(record) + "\n", encoding="utf-8")


def host_purelib() -> str:
    return sysconfig.get_paths()["purelib"]
