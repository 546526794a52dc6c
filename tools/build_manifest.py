#!/usr/bin/env python3
"""Rebuild wheels.json (repo root) and vox1_setup/data/wheels.json from the wheel catalog TSV.

    python tools/build_manifest.py              # write both copies
    python tools/build_manifest.py --check      # exit 1 if either copy differs from a fresh build

The catalog lives beside the clone: ../shared/data/flash-attn-wheels.tsv (override with --tsv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TSV = ROOT.parent / "shared" / "data" / "flash-attn-wheels.tsv"
OUTPUTS = (ROOT / "wheels.json", ROOT / "vox1_setup" / "data" / "wheels.json")


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(ROOT))
    from vox1_setup.errors import VoxError
    from vox1_setup.manifest import dump_manifest, write_manifest
    from vox1_setup.manifest.catalog import build_from_tsv

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=DEFAULT_TSV, help=f"catalog (default: {DEFAULT_TSV})")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a copy is stale")
    args = parser.parse_args(argv)
    try:
        manifest = build_from_tsv(args.tsv)
    except VoxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    data = dump_manifest(manifest)
    stale = [p for p in OUTPUTS if not p.is_file() or p.read_bytes() != data]
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(ROOT)} (run tools/build_manifest.py)", file=sys.stderr)
        return 1 if stale else 0
    for p in OUTPUTS:
        write_manifest(manifest, p)
    print(f"wrote {', '.join(str(p.relative_to(ROOT)) for p in OUTPUTS)}: {len(manifest)} wheels")
    return 0


if __name__ == "__main__":
    sys.exit(main())
