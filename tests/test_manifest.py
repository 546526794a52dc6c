"""wheels.json: built reproducibly from the catalog, shipped byte-identical, valid, loadable from paths and URLs."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.http_server import FileServer
from vox1_setup.errors import BadInputError, DownloadError
from vox1_setup.filenames import WheelNameError, cuda_from_label, parse_wheel_name
from vox1_setup.knowledge.abi import builder_from_name, torch_pip_abi, wheel_abi
from vox1_setup.manifest import (
    MANIFEST_SCHEMA,
    Manifest,
    WheelEntry,
    active_manifest,
    default_manifest,
    dump_manifest,
    load_manifest,
    parse_manifest_text,
    user_manifest_path,
)
from vox1_setup.manifest.catalog import build_from_tsv, build_from_tsv_bytes
from vox1_setup.manifest.io import bundled_manifest_bytes
from vox1_setup.manifest.validate import validate_manifest
from vox1_setup.paths import default_paths

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT.parent / "shared" / "data" / "flash-attn-wheels.tsv"


def catalog_path() -> Path:
    if not CATALOG.is_file():
        pytest.fail(f"the wheel catalog is missing: expected {CATALOG} (../shared/data relative to the clone)")
    return CATALOG


# ------------------------------------------------------------------------------------------------------------
# Reproducible build, shipped copies


def test_repo_and_package_copies_are_byte_identical() -> None:
    assert (ROOT / "wheels.json").read_bytes() == (ROOT / "vox1_setup" / "data" / "wheels.json").read_bytes()
    assert bundled_manifest_bytes() == (ROOT / "wheels.json").read_bytes()


def test_rebuilding_from_the_catalog_gives_the_committed_bytes() -> None:
    built = dump_manifest(build_from_tsv(catalog_path()))
    assert built == (ROOT / "wheels.json").read_bytes(), "wheels.json is stale: run tools/build_manifest.py"


def test_every_catalog_row_is_in_with_its_evidence_and_checksum() -> None:
    with catalog_path().open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    m = default_manifest()
    assert len(m) == len(rows)
    for row, entry in zip(rows, m.entries, strict=True):
        assert entry.url == row["url"] and entry.filename == row["filename"]
        assert entry.evidence == row["evidence"] and entry.source == row["source"]
        assert entry.sha256 == (row["sha256"] or None)
        if entry.os == "linux" and row["cxx11abi"]:
            assert entry.cxx11abi == (row["cxx11abi"] == "TRUE")


def test_the_bundled_manifest_is_valid() -> None:
    m = default_manifest()
    assert m.schema == MANIFEST_SCHEMA
    assert validate_manifest(m) == []


def test_build_rejects_a_broken_catalog_listing_each_bad_row(tmp_path: Path) -> None:
    header = catalog_path().read_text(encoding="utf-8").splitlines()[:3]
    bad = header[1].replace("https://", "https://x/")  # url no longer ends in the file name? still ends: break it
    cells = header[2].split("\t")
    cells[7] = "not-a-wheel.zip"
    tsv = "\n".join([header[0], header[1], header[1], "\t".join(cells), bad]) + "\n"
    with pytest.raises(BadInputError) as err:
        build_from_tsv_bytes(tsv.encode(), "catalog.tsv")
    assert "line 3: duplicate url" in err.value.message
    assert "line 4" in err.value.message and "not a wheel file name" in err.value.message


def test_build_rejects_unexpected_columns() -> None:
    with pytest.raises(BadInputError, match="unexpected columns"):
        build_from_tsv_bytes(b"a\tb\n1\t2\n", "x.tsv")


# ------------------------------------------------------------------------------------------------------------
# Effective ABI, GPU archs and glibc floors as data (generated from the catalog)


def test_abi_rules_agree_with_the_catalog_for_every_row() -> None:
    """The catalog's cxx11abi column holds the effective ABI: the rules must derive the same from the name."""
    disagree = []
    for e in default_manifest().entries:
        if e.cxx11abi is None:
            continue
        name = parse_wheel_name(e.filename)
        abi, _ = wheel_abi(source=e.source, os_name=e.os, torch=e.torch, cuda=e.cuda,
                           cuda_major_only=e.cuda_major_only, flash_attn_version=e.flash_attn_version,
                           label=name.cxx11abi_label)
        if abi != e.cxx11abi:
            disagree.append(e.filename)
    assert disagree == []


@pytest.mark.parametrize(("torch", "cuda", "abi"), [
    ("2.5.1", "12.4", False), ("2.6.0", "11.8", False), ("2.6.0", "12.4", False), ("2.6.0", "12.6", True),
    ("2.6.0", None, False), ("2.7.0", "11.8", True), ("2.9.0", "13.0", True), ("2.4.1", None, False),
])
def test_torch_pip_abi_table(torch: str, cuda: str | None, abi: bool) -> None:
    assert torch_pip_abi(torch, cuda) is abi


@pytest.mark.parametrize(("filename", "fields"), [
    # official, label FALSE, torch ≥ 2.7: really ABI 1; v2.8.x needs GLIBC 2.32; has Blackwell kernels
    ("flash_attn-2.8.3+cu12torch2.7cxx11abiFALSE-cp311-cp311-linux_x86_64.whl",
     {"cxx11abi": True, "min_glibc": "2.32", "cuda": "12", "cuda_major_only": True, "source": "local",
      "gpu_archs": ("sm_80", "sm_90", "sm_100", "sm_120")}),
    # official v2.8.x for torch 2.6: ABI 1 under both labels (Dao-AILab#1783)
    ("flash_attn-2.8.3+cu12torch2.6cxx11abiFALSE-cp310-cp310-linux_x86_64.whl", {"cxx11abi": True}),
    ("flash_attn-2.7.4.post1+cu12torch2.6cxx11abiFALSE-cp310-cp310-linux_x86_64.whl",
     {"cxx11abi": False, "min_glibc": None, "gpu_archs": ("sm_80", "sm_90")}),
    # mjun0812: no label, ABI of its torch build; nvcc label
    ("flash_attn-2.8.3+cu124torch2.6-cp312-cp312-linux_x86_64.whl", {"cxx11abi": False, "cuda": "12.4",
                                                                      "source": "local"}),
    ("flash_attn-2.8.3+cu126torch2.6-cp312-cp312-linux_x86_64.whl", {"cxx11abi": True}),
    ("flash_attn-2.7.4+cu128torch2.7-cp312-cp312-linux_x86_64.whl",
     {"gpu_archs": ("sm_80", "sm_90", "sm_100", "sm_120")}),
    ("flash_attn-2.6.3+cu128torch2.7-cp312-cp312-linux_x86_64.whl", {"gpu_archs": ("sm_80", "sm_90")}),
    ("flash_attn-2.7.4+cu126torch2.7-cp312-cp312-linux_x86_64.whl", {"gpu_archs": ("sm_80", "sm_90")}),
    ("flash_attn-2.8.3+cu128torch2.9-cp313-cp313t-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
     {"abi_tag": "cp313t", "min_glibc": "2.24",
      "platform_tags": ("manylinux_2_24_x86_64", "manylinux_2_28_x86_64")}),
    # Windows: no ABI question
    ("flash_attn-2.8.3+cu128torch2.9.0cxx11abiFALSE-cp313-cp313-win_amd64.whl",
     {"cxx11abi": None, "torch": "2.9.0", "torch_mm": "2.9", "cuda": "12.8"}),
    # kingbri1-style Linux name: built against torch ≥ 2.7, so ABI 1 whatever the label
    ("flash_attn-2.8.3+cu128torch2.8.0cxx11abiFALSE-cp311-cp311-linux_x86_64.whl", {"cxx11abi": True}),
    ("flash_attn-1.0.9+cu121torch2.3-cp310-cp310-linux_x86_64.whl", {"gpu_archs": ("sm_75", "sm_80")}),
])
def test_entry_from_a_file_name(filename: str, fields: dict[str, object]) -> None:
    e = WheelEntry.from_filename(filename)
    assert e.filename == filename and e.evidence == "local-file"
    for key, want in fields.items():
        assert getattr(e, key) == want, key
    assert validate_manifest(Manifest(entries=(replace(e, url=f"https://example.org/w/{filename}"),))) == []


def test_entry_from_a_url_takes_source_and_release() -> None:
    url = ("https://github.com/mjun0812/flash-attention-prebuild-wheels/releases/download/v0.7.16/"
           "flash_attn-2.8.3%2Bcu128torch2.7-cp311-cp311-linux_x86_64.whl")
    e = WheelEntry.from_filename("", url)
    assert e.source == "mjun0812" and e.release == "v0.7.16"
    assert e.filename == "flash_attn-2.8.3+cu128torch2.7-cp311-cp311-linux_x86_64.whl"
    assert e.base_version == "2.8.3"


@pytest.mark.parametrize("name", ["flash_attn.tar.gz", "flash_attn_3-3.0.0b1+cu128torch2.8-cp39-abi3-linux_x86_64.whl",
                                  "flash_attn-2.8.3-cp311-cp311-linux_x86_64.whl"])
def test_entry_from_a_bad_file_name(name: str) -> None:
    with pytest.raises(BadInputError):
        WheelEntry.from_filename(name)


def test_filename_parser_keeps_the_local_label_case() -> None:
    n = parse_wheel_name("flash_attn-2.8.3.post1+cu12torch2.7cxx11abiTRUE-cp312-cp312-linux_aarch64.whl")
    assert n.local == "cu12torch2.7cxx11abiTRUE" and n.public_version == "2.8.3.post1"
    assert n.cxx11abi_label is True and n.cuda == "12" and n.cuda_major_only
    assert cuda_from_label("118") == ("11.8", False) and cuda_from_label("1210") == ("12.10", False)
    with pytest.raises(WheelNameError):
        parse_wheel_name("flash_attn-2.8.3.whl")
    assert builder_from_name(torch_label="2.7", cuda_major_only=True, abi_label=False) == "Dao-AILab"


# ------------------------------------------------------------------------------------------------------------
# validate


def _good() -> WheelEntry:
    return default_manifest().entries[0]


@pytest.mark.parametrize(("change", "code"), [
    ({"url": "http://github.com/x/flash_attn-2.0.9+cu121torch2.1cxx11abiTRUE-cp310-cp310-linux_x86_64.whl"}, "url"),
    ({"url": "https://github.com/x/other.whl"}, "url"),
    ({"filename": "flash_attn.whl"}, "filename"),
    ({"torch_mm": "2.2"}, "mismatch"),
    ({"python_tag": "cp311"}, "mismatch"),
    ({"platform_tags": ("win_amd64",)}, "mismatch"),
    ({"cuda": "12.4"}, "mismatch"),
    ({"sha256": "ABC"}, "sha256"),
    ({"size": 0}, "size"),
    ({"evidence": "rumoured"}, "evidence"),
    ({"gpu_archs": ()}, "field"),
    ({"min_glibc": "two"}, "field"),
])
def test_validate_reports_each_problem(change: dict[str, object], code: str) -> None:
    bad = replace(_good(), **change)  # type: ignore[arg-type]
    problems = validate_manifest(Manifest(entries=(bad,)))
    assert code in {p.code for p in problems}, problems


def test_validate_reports_duplicates_and_keeps_going() -> None:
    a = _good()
    b = replace(a, url=a.url.replace("+", "%2B"))
    c = replace(a, sha256="nothex")
    problems = validate_manifest(Manifest(entries=(a, b, c)))
    assert [(p.index, p.code) for p in problems] == [(1, "duplicate"), (2, "sha256"), (2, "duplicate")]


# ------------------------------------------------------------------------------------------------------------
# load / dump


def _small(n: int = 3) -> Manifest:
    return Manifest(entries=default_manifest().entries[:n], generated_from={"catalog": "test"})


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    m = _small()
    path = tmp_path / "wheels ü.json"
    path.write_bytes(dump_manifest(m))
    loaded = load_manifest(path)
    assert loaded.entries == m.entries and loaded.origin == str(path)
    assert dump_manifest(loaded) == dump_manifest(m)
    assert load_manifest(path.as_uri()).entries == m.entries


def test_load_over_http_from_loopback() -> None:
    data = dump_manifest(_small())
    with FileServer() as srv:
        url = srv.add("/mirror/wheels.json", data)
        assert load_manifest(url).entries == _small().entries
        with pytest.raises(DownloadError, match="HTTP 404"):
            load_manifest(srv.url("/missing.json"))


def test_plain_http_elsewhere_is_refused() -> None:
    with pytest.raises(BadInputError, match="plain http"):
        load_manifest("http://mirror.example.org/wheels.json")


@pytest.mark.parametrize(("text", "fragment"), [
    ("{", "not valid JSON"),
    ("[]", "expected a JSON object"),
    ('{"schema": "vox1-wheels/2", "entries": []}', "schema is 'vox1-wheels/2'"),
    ('{"schema": "vox1-wheels/1", "entries": {}}', "\"entries\" must be a list"),
    ('{"schema": "vox1-wheels/1", "entries": [{"url": 1}]}', "entries[0].url: expected a string"),
    ('{"schema": "vox1-wheels/1", "entries": [{"url": "https://x/y.whl"}]}', "entries[0].filename: required"),
])
def test_malformed_manifests_are_bad_input(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError) as err:
        load_manifest(path)
    assert fragment in err.value.message


def test_missing_manifest_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="cannot read manifest"):
        load_manifest(tmp_path / "nope.json")


def test_entry_type_errors_name_the_field() -> None:
    doc = json.loads(dump_manifest(_small(1)))
    doc["entries"][0]["cuda_major_only"] = 1
    with pytest.raises(BadInputError, match=r"entries\[0\].cuda_major_only: expected true or false"):
        parse_manifest_text(json.dumps(doc), "doc")
    doc["entries"][0]["cuda_major_only"] = True
    doc["entries"][0]["platform_tags"] = ["linux_x86_64", 3]
    with pytest.raises(BadInputError, match="list of strings"):
        parse_manifest_text(json.dumps(doc), "doc")


def test_active_manifest_order(tmp_path: Path) -> None:
    paths = default_paths()
    assert active_manifest(None, paths) is default_manifest()
    user = user_manifest_path(paths)
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_bytes(dump_manifest(_small(2)))
    assert len(active_manifest(None, paths)) == 2
    other = tmp_path / "other.json"
    other.write_bytes(dump_manifest(_small(1)))
    assert len(active_manifest(str(other), paths)) == 1


def test_written_manifests_are_readable_by_everyone(tmp_path: Path) -> None:
    from vox1_setup.manifest import write_manifest

    out = tmp_path / "w.json"
    write_manifest(_small(1), out)
    if sys.platform != "win32":
        assert out.stat().st_mode & 0o044 == 0o044


# ------------------------------------------------------------------------------------------------------------
# Parse cache


def test_parse_cache_gives_equal_manifests_and_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vox1_setup.manifest import io

    data = bundled_manifest_bytes()
    cache = tmp_path / "cache"
    first = io.parse_manifest_bytes(data, "a", trusted=True, cache_dir=cache)
    (cached_file,) = cache.glob("*.marshal")
    # Second time the JSON is never parsed.
    monkeypatch.setattr(io, "parse_manifest_text", lambda *a, **k: pytest.fail("JSON parsed despite the cache"))
    second = io.parse_manifest_bytes(data, "b", cache_dir=cache)
    assert second.origin == "b" and second.entries == first.entries == default_manifest().entries
    assert second.generated_from == first.generated_from and second.schema == first.schema
    for a, b in zip(first.entries, second.entries, strict=True):  # derived keys and exact types survive
        assert a.to_row() == b.to_row()
        assert [type(v) for v in a.to_row()] == [type(v) for v in b.to_row()]
    assert cached_file.stat().st_size < len(data)


def test_parse_cache_keeps_bools_and_ints_apart(tmp_path: Path) -> None:
    """cxx11abi True/False next to cuda_minor 1/0: equal values of different types must not be shared."""
    from vox1_setup.manifest import io

    names = ["flash_attn-2.8.3+cu121torch2.3-cp310-cp310-linux_x86_64.whl",
             "flash_attn-2.8.3+cu120torch2.3-cp310-cp310-linux_x86_64.whl"]
    entries = tuple(replace(WheelEntry.from_filename(n), url=f"https://example.org/{n}") for n in names)
    assert {e.cuda_minor for e in entries} == {0, 1} and {type(e.cxx11abi) for e in entries} == {bool}
    data = dump_manifest(Manifest(entries=entries))
    io.parse_manifest_bytes(data, "x", cache_dir=tmp_path)
    again = io.parse_manifest_bytes(data, "x", cache_dir=tmp_path)
    for e in again.entries:
        assert type(e.cuda_minor) is int and type(e.cxx11abi) is bool and type(e.cuda_major_only) is bool


@pytest.mark.parametrize("garbage", [b"", b"\x00not marshal", b"\xe9" * 10])
def test_a_damaged_or_foreign_cache_file_is_ignored(tmp_path: Path, garbage: bytes) -> None:
    import marshal

    from vox1_setup.manifest import io

    data = dump_manifest(_small(2))
    target = io._cache_file(tmp_path, data)
    for blob in (garbage, marshal.dumps((("vox1-wheels-parsed/0", ()), ())), marshal.dumps([1, 2])):
        target.write_bytes(blob)
        assert io.parse_manifest_bytes(data, "x", cache_dir=tmp_path).entries == _small(2).entries


def test_a_changed_manifest_never_hits_the_old_cache_and_old_caches_are_pruned(tmp_path: Path) -> None:
    from vox1_setup.manifest import io

    for n in range(1, io.CACHE_KEEP + 3):
        data = dump_manifest(_small(n))
        assert len(io.parse_manifest_bytes(data, "x", cache_dir=tmp_path)) == n
    assert len(list(tmp_path.glob("*.marshal"))) == io.CACHE_KEEP


def test_an_unwritable_cache_only_costs_speed(tmp_path: Path) -> None:
    from vox1_setup.manifest import io

    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache dir should be", encoding="utf-8")
    assert len(io.parse_manifest_bytes(dump_manifest(_small(2)), "x", cache_dir=blocker / "manifests")) == 2
    assert blocker.read_text(encoding="utf-8").startswith("a file")


def test_active_manifest_uses_the_cache_under_the_paths(tmp_path: Path) -> None:
    paths = default_paths()
    path = tmp_path / "lab manifest.json"
    path.write_bytes(dump_manifest(_small(3)))
    assert len(active_manifest(str(path), paths)) == 3
    assert len(list((paths.cache / "manifests").glob("*.marshal"))) == 1
    assert len(active_manifest(path.as_uri(), paths)) == 3  # file:// URL, %20 for the space


def test_a_broken_user_copy_says_how_to_get_back(capsys: pytest.CaptureFixture[str]) -> None:
    from vox1_setup.cli import run_cli

    user = user_manifest_path(default_paths())
    user.parent.mkdir(parents=True, exist_ok=True)
    user.write_text('{"schema": "vox1-wheels/1", "entries": [', encoding="utf-8")
    assert run_cli(["manifest", "list", "--torch", "2.7"]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "manifest update" in err and str(user) in err
