"""The wheel manifest (`vox1-wheels/1`): values, loading, building from the catalog, validation, updates.

`from vox1_setup.manifest import WheelEntry, Manifest, load_manifest, default_manifest` is the stable API.
"""

from __future__ import annotations

from vox1_setup.manifest.io import (
    active_manifest,
    default_manifest,
    dump_manifest,
    load_manifest,
    parse_manifest_text,
    user_manifest_path,
    write_manifest,
)
from vox1_setup.manifest.model import MANIFEST_SCHEMA, Manifest, WheelEntry

__all__ = [
    "MANIFEST_SCHEMA",
    "Manifest",
    "WheelEntry",
    "active_manifest",
    "default_manifest",
    "dump_manifest",
    "load_manifest",
    "parse_manifest_text",
    "user_manifest_path",
    "write_manifest",
]
