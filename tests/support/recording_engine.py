"""A Python with a stand-in `engine` package that records how it was started (no torch, no models).

Its `python -m engine` writes `{"argv": [...], "executable": ...}` to the file named by ENGINE_RECORD, prints
the line the real engine logs first, and exits with ENGINE_EXIT (default 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.venvs import make_venv, site_packages, write_fixture_package

RECORDING_ENGINE = {
    "engine/__init__.py": "",
    "engine/__main__.py": (
        "import json, os, sys\n"
        "with open(os.environ['ENGINE_RECORD'], 'w', encoding='utf-8') as fh:\n"
        "    json.dump({'argv': sys.argv[1:], 'executable': sys.executable}, fh)\n"
        "print('engine: Attention implementation in use: sdpa')\n"
        "sys.exit(int(os.environ.get('ENGINE_EXIT', '0')))\n"
    ),
}


def make_engine_python(root: Path) -> Path:
    """A venv at `root` whose `-m engine` is the recording stand-in; returns its interpreter."""
    py = make_venv(root, pip=False)
    write_fixture_package(site_packages(root), "engine", RECORDING_ENGINE, "0.1.0", dist_name="vox1-engine-fixture")
    return py


def recorded(record: Path) -> dict[str, Any]:
    doc = json.loads(record.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc
