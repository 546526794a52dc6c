"""The resolver against the real manifest: every rule, every known trap, ranking and advice (table-driven)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.envs import env_doc, make_env
from vox1_setup.environment import environment_from_dict
from vox1_setup.errors import BadInputError
from vox1_setup.manifest import Manifest, WheelEntry, default_manifest
from vox1_setup.resolver import (
    REASONS,
    Resolution,
    ResolveOptions,
    parse_flash_attn_spec,
    resolve,
    resolve_wheel_file,
)


@pytest.fixture(scope="module")
def manifest() -> Manifest:
    return default_manifest()


def by_name(m: Manifest, filename: str) -> WheelEntry:
    found = m.by_filename(filename)
    assert found, f"{filename} not in the manifest"
    return found[0]


def verdict(r: Resolution, filename: str) -> tuple[bool, set[str]]:
    for c in r.candidates:
        if c.entry.filename == filename:
            return c.accepted, set(c.codes)
    raise AssertionError(f"{filename} is not a candidate")


@dataclass(frozen=True)
class Trap:
    name: str
    env: dict[str, Any]
    options: ResolveOptions = field(default_factory=ResolveOptions)
    selected: str | None = None  # exact file name expected, or None for "no wheel"
    any_selected: bool = False  # True: some wheel, checked by `check`
    rejected: dict[str, set[str]] = field(default_factory=dict)  # file -> codes it must carry
    accepted: tuple[str, ...] = ()
    advice: tuple[str, ...] = ()  # fragments that must appear in the advice
    no_advice: tuple[str, ...] = ()  # fragments that must not
    warnings: tuple[str, ...] = ()


OFFICIAL_283_T26_FALSE = "flash_attn-2.8.3+cu12torch2.6cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
OFFICIAL_283_T26_TRUE = "flash_attn-2.8.3+cu12torch2.6cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
OFFICIAL_2741_T26_FALSE = "flash_attn-2.7.4.post1+cu12torch2.6cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
OFFICIAL_283_T27_FALSE = "flash_attn-2.8.3+cu12torch2.7cxx11abiFALSE-cp311-cp311-linux_x86_64.whl"
OFFICIAL_283_T27_TRUE = "flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
MJUN_263_T27 = "flash_attn-2.6.3+cu128torch2.7-cp311-cp311-linux_x86_64.whl"

TRAPS = [
    Trap("torch 2.6 +cu124 is ABI 0: v2.8.x torch-2.6 wheels are ABI 1 under both labels (Dao-AILab#1783)",
         {"torch": "2.6.0+cu124", "driver": "550.54.14"},
         selected="flash_attn-2.8.3+cu124torch2.6-cp311-cp311-linux_x86_64.whl",
         rejected={OFFICIAL_283_T26_FALSE: {"cxx11abi"}, OFFICIAL_283_T26_TRUE: {"cxx11abi"}},
         accepted=(OFFICIAL_2741_T26_FALSE,)),
    Trap("torch 2.6 +cu126 is ABI 1: the old-ABI 2.7.4.post1 wheel is out, v2.8.x fits",
         {"torch": "2.6.0+cu126", "driver": "560.35.03"},
         any_selected=True,
         rejected={OFFICIAL_2741_T26_FALSE: {"cxx11abi"}},
         accepted=(OFFICIAL_283_T26_FALSE, OFFICIAL_283_T26_TRUE)),
    Trap("official cxx11abiFALSE wheels for torch ≥ 2.7 are really ABI 1",
         {"torch": "2.7.1+cu128"},
         any_selected=True, accepted=(OFFICIAL_283_T27_FALSE, OFFICIAL_283_T27_TRUE)),
    Trap("a torch 2.7 reporting the old ABI (custom build) rejects both official labels",
         {"torch": "2.7.1+cu128", "cxx11abi": False},
         rejected={OFFICIAL_283_T27_FALSE: {"cxx11abi"}, OFFICIAL_283_T27_TRUE: {"cxx11abi"}},
         advice=("uses the C++11 ABI FALSE (old ABI), but the wheels for torch 2.7 use TRUE",)),
    Trap("Blackwell (sm_120) cannot use flash-attn 2.6.3",
         {"torch": "2.7.1+cu128", "gpus": ("12.0",), "gpu_names": ("NVIDIA GeForce RTX 5090",), "driver": "575.51.03"},
         any_selected=True, rejected={MJUN_263_T27: {"gpu-arch"}}),
    Trap("Blackwell with --flash-attn ==2.6.3: nothing fits, and the advice lists what would",
         {"torch": "2.7.1+cu128", "gpus": ("12.0",), "driver": "575.51.03"},
         options=ResolveOptions(flash_attn_spec="==2.6.3"),
         rejected={MJUN_263_T27: {"gpu-arch"}},
         advice=("no wheel matches --flash-attn ==2.6.3", "2.8.3")),
    Trap("Blackwell with torch 2.6: torch itself has no sm_120 kernels",
         {"torch": "2.6.0+cu126", "gpus": ("12.0",), "driver": "575.51.03"},
         rejected={OFFICIAL_283_T26_TRUE: {"torch-gpu-arch"}},
         advice=("torch ≥ 2.7 built with CUDA ≥ 12.8",)),
    Trap("Blackwell with a 560 driver",
         {"torch": "2.7.1+cu128", "gpus": ("12.0",), "driver": "560.35.03"},
         rejected={OFFICIAL_283_T27_TRUE: {"driver-too-old"}}, advice=("≥ 570",)),
    Trap("glibc 2.31 (Ubuntu 20.04) rejects official v2.8.x (GLIBC_2.32, Dao-AILab#1708); manylinux wins",
         {"glibc": "2.31"},
         selected="flash_attn-2.8.3+cu128torch2.7-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
         rejected={OFFICIAL_283_T27_TRUE: {"glibc"}}),
    Trap("glibc 2.31 with --flash-attn <2.8: official 2.7.4.post1 loads there",
         {"glibc": "2.31"}, options=ResolveOptions(flash_attn_spec="<2.8"),
         selected="flash_attn-2.7.4.post1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"),
    Trap("Windows, Python 3.13, torch 2.9",
         {"os": "windows", "python": "3.13.1", "torch": "2.9.0+cu128", "driver": "576.02"},
         selected="flash_attn-2.8.3+cu128torch2.9-cp313-cp313-win_amd64.whl",
         accepted=("flash_attn-2.8.3+cu128torch2.9.0cxx11abiFALSE-cp313-cp313-win_amd64.whl",),
         rejected={"flash_attn-2.8.3+cu128torch2.9-cp312-cp312-win_amd64.whl": {"python-tag"},
                   OFFICIAL_283_T27_TRUE: {"platform", "python-tag", "torch-version"}}),
    Trap("Windows, Python 3.13, torch 2.5: no wheel; the advice names a torch that has one",
         {"os": "windows", "python": "3.13.1", "torch": "2.5.1+cu124", "driver": "576.02"},
         advice=("no wheel for torch 2.5.1+cu124 + Python 3.13 (cp313-cp313) on windows x86_64",
                 "torch 2.6 +cu126 on the same Python has flash-attn 2.8.3 "
                 "(file flash_attn-2.8.3+cu128torch2.6-cp313-cp313-win_amd64.whl)",
                 'pip install "torch==2.6.*" --index-url https://download.pytorch.org/whl/cu126',
                 "the nearest: Python 3.12 has flash-attn 2.8.3 "
                 "(file flash_attn-2.8.3+cu124torch2.5-cp312-cp312-win_amd64.whl)")),
    Trap("Turing (sm_75) cannot run FA2 at all",
         {"gpus": ("7.5",), "gpu_names": ("Tesla T4",)},
         rejected={OFFICIAL_283_T27_TRUE: {"gpu-unsupported"}},
         advice=("your GPU (Tesla T4, sm_75, Turing) cannot run FlashAttention 2: keep attention on sdpa",)),
    Trap("CPU-only torch",
         {"torch": "2.7.1+cpu"},
         rejected={OFFICIAL_283_T27_TRUE: {"no-cuda-torch"}}, advice=("CPU-only build", "cu128")),
    Trap("ROCm torch",
         {"torch": "2.7.1+rocm6.3", "hip": "6.3"},
         rejected={OFFICIAL_283_T27_TRUE: {"rocm-torch"}}, advice=("ROCm",)),
    Trap("cu13 torch with a 570 driver (max CUDA 12.8)",
         {"torch": "2.9.0+cu130", "driver": "570.86.15"},
         rejected={"flash_attn-2.8.3+cu130torch2.9-cp311-cp311-linux_x86_64.whl": {"driver-too-old"},
                   "flash_attn-2.8.3+cu128torch2.9-cp311-cp311-linux_x86_64.whl": {"cuda-major"}},
         advice=("driver 570.86.15 supports CUDA 12.8 at most", "needs CUDA 13.x (driver ≥ 580",
                 "torch 2.9 +cu128 on the same Python")),
    Trap("driver 531 (CUDA 12.1 at most) with a cu13 torch: the driver is named with the floor it misses",
         {"torch": "2.9.0+cu130", "driver": "531.14"},
         rejected={"flash_attn-2.8.3+cu130torch2.9-cp311-cp311-linux_x86_64.whl": {"driver-too-old"}},
         advice=("driver 531.14 supports CUDA 12.1 at most; flash-attn 2.8.3 for torch 2.9.0+cu130 needs CUDA 13.x "
                 "(driver ≥ 580",)),
    Trap("driver below the CUDA 12 floor (525.60.13) with a cu128 torch",
         {"driver": "470.82.01"},
         rejected={OFFICIAL_283_T27_TRUE: {"driver-too-old"}},
         advice=("driver ≥ 525.60.13", "torch 2.7 +cu118 on the same Python")),
    Trap("Windows driver floor is 527.41 for CUDA 12",
         {"os": "windows", "python": "3.12.4", "torch": "2.7.1+cu128", "driver": "527.00", "driver_cuda": "12.0"},
         rejected={"flash_attn-2.8.3+cu128torch2.7-cp312-cp312-win_amd64.whl": {"driver-too-old"}}),
    Trap("no torch in the target",
         {"torch": None}, rejected={OFFICIAL_283_T27_TRUE: {"no-torch"}}, advice=("install VOX-1's torch",)),
    Trap("torch that fails to import",
         {"torch": None, "import_error": "OSError: libc10.so: cannot open shared object file"},
         rejected={OFFICIAL_283_T27_TRUE: {"torch-import-error"}}, advice=("reinstall torch",)),
    Trap("macOS: no CUDA torch, no NVIDIA GPU, no macOS wheel",
         {"os": "darwin", "machine": "arm64", "torch": "2.7.1", "gpus": (), "driver": None},
         rejected={OFFICIAL_283_T27_TRUE: {"no-cuda-torch", "no-gpu", "platform"}}, advice=("sdpa",),
         no_advice=("CUDA build", "pip install torch", "resolve again")),
    Trap("no GPU at all", {"gpus": ()}, rejected={OFFICIAL_283_T27_TRUE: {"no-gpu"}}, advice=("sdpa",)),
    Trap("CPU torch without an NVIDIA GPU: sdpa, and no CUDA torch to install",
         {"torch": "2.7.1+cpu", "gpus": (), "driver": None},
         rejected={OFFICIAL_283_T27_TRUE: {"no-cuda-torch", "no-gpu"}}, advice=("no NVIDIA GPU was found", "sdpa"),
         no_advice=("CUDA build", "pip install torch", "cu128", "resolve again")),
    Trap("no torch and no NVIDIA GPU: install VOX-1's torch, not a CUDA build",
         {"torch": None, "gpus": (), "driver": None},
         rejected={OFFICIAL_283_T27_TRUE: {"no-torch", "no-gpu"}}, advice=("install VOX-1's torch", "CPU build"),
         no_advice=("CUDA build", "resolve again")),
    Trap("broken torch and no NVIDIA GPU: reinstall torch, nothing to resolve again",
         {"torch": None, "import_error": "OSError: libc10.so", "gpus": (), "driver": None},
         rejected={OFFICIAL_283_T27_TRUE: {"torch-import-error", "no-gpu"}}, advice=("reinstall torch",),
         no_advice=("resolve again",)),
    Trap("CPU torch with a Turing GPU: a CUDA torch helps sdpa, but resolving again finds nothing",
         {"torch": "2.7.1+cpu", "gpus": ("7.5",), "gpu_names": ("Tesla T4",)},
         rejected={OFFICIAL_283_T27_TRUE: {"no-cuda-torch", "gpu-unsupported"}},
         advice=("keep attention on sdpa", "runs on the GPU with sdpa; FlashAttention 2 still cannot"),
         no_advice=("resolve again",)),
    Trap("two GPUs, one Turing: decide for the Ada one and warn about the other",
         {"gpus": ("8.9", "7.5")}, any_selected=True, warnings=("GPU 1", "cannot run FlashAttention 2")),
    Trap("--gpu 1 picks the Turing GPU: nothing fits",
         {"gpus": ("8.9", "7.5")}, options=ResolveOptions(gpu_index=1),
         rejected={OFFICIAL_283_T27_TRUE: {"gpu-unsupported"}}),
    Trap("Ampere + Blackwell: the wheel must carry Blackwell kernels too",
         {"gpus": ("8.6", "12.0"), "driver": "575.51.03"}, any_selected=True, rejected={MJUN_263_T27: {"gpu-arch"}}),
    Trap("--gpu 0 on Ampere + Blackwell: 2.6.3 is fine for the engine's GPU, with a warning",
         {"gpus": ("8.6", "12.0"), "driver": "575.51.03"}, options=ResolveOptions(gpu_index=0,
                                                                                 flash_attn_spec="==2.6.3"),
         any_selected=True, warnings=("no kernels for GPU 1",)),
    Trap("derived rows are used only when nothing listed/referenced fits, and the output says so",
         {"python": "3.9.18", "torch": "2.6.0+cu118", "driver": "550.54.14"},
         selected="flash_attn-2.7.3+cu11torch2.6cxx11abiFALSE-cp39-cp39-linux_x86_64.whl",
         advice=("derived catalog row",)),
    Trap("--no-derived refuses them",
         {"python": "3.9.18", "torch": "2.6.0+cu118", "driver": "550.54.14"},
         options=ResolveOptions(allow_derived=False),
         rejected={"flash_attn-2.7.3+cu11torch2.6cxx11abiFALSE-cp39-cp39-linux_x86_64.whl": {"derived"}},
         advice=("unconfirmed (derived) wheel would fit",)),
    Trap("aarch64 with glibc 2.31: manylinux_2_34 wheels need a newer glibc",
         {"machine": "aarch64", "glibc": "2.31", "torch": "2.9.0+cu128"}, any_selected=True,
         rejected={"flash_attn-2.8.3+cu128torch2.9-cp311-cp311-manylinux_2_34_aarch64.whl": {"glibc"}}),
    Trap("aarch64 with glibc 2.35 accepts the manylinux_2_34 wheel",
         {"machine": "aarch64", "glibc": "2.35", "torch": "2.9.0+cu128"}, any_selected=True,
         accepted=("flash_attn-2.8.3+cu128torch2.9-cp311-cp311-manylinux_2_34_aarch64.whl",)),
    Trap("free-threaded Python 3.13t takes cp313t wheels only",
         {"python": "3.13.1", "gil_disabled": True, "torch": "2.9.0+cu128"},
         selected="flash_attn-2.8.3+cu128torch2.9-cp313-cp313t-linux_x86_64.whl",
         rejected={"flash_attn-2.8.3+cu128torch2.9-cp313-cp313-linux_x86_64.whl": {"python-tag"}}),
    Trap("flash-attn 1.x is not FA2",
         {"torch": "2.3.1+cu121", "python": "3.10.14", "driver": "550.54.14"}, any_selected=True,
         rejected={"flash_attn-1.0.9+cu121torch2.3-cp310-cp310-linux_x86_64.whl": {"not-fa2"}}),
]


@pytest.mark.parametrize("trap", TRAPS, ids=[t.name for t in TRAPS])
def test_trap(trap: Trap, manifest: Manifest) -> None:
    r = resolve(make_env(**trap.env), manifest, trap.options)
    if trap.selected is not None:
        assert r.selected is not None and r.selected.filename == trap.selected, r.advice
    elif trap.any_selected:
        assert r.selected is not None, r.advice
    else:
        assert r.selected is None
        assert any("sdpa" in a for a in r.advice)
    for filename, codes in trap.rejected.items():
        accepted, have = verdict(r, filename)
        assert not accepted and codes <= have, (filename, have)
    for filename in trap.accepted:
        accepted, have = verdict(r, filename)
        assert accepted, (filename, have)
    text = "\n".join(r.advice)
    for fragment in trap.advice:
        assert fragment in text, (fragment, r.advice)
    for fragment in trap.no_advice:
        assert fragment not in text, (fragment, r.advice)
    warned = "\n".join(r.warnings)
    for fragment in trap.warnings:
        assert fragment in warned, (fragment, r.warnings)


def test_every_rejection_names_each_failing_rule(manifest: Manifest) -> None:
    """ALL reasons, not the first: a Windows cp312 torch-2.8 wheel fails three rules on this Linux box."""
    r = resolve(make_env(torch="2.7.1+cu128"), manifest)
    accepted, codes = verdict(r, "flash_attn-2.8.3+cu128torch2.8-cp312-cp312-win_amd64.whl")
    assert not accepted
    assert codes == {"platform", "python-tag", "torch-version"}


def test_reason_messages_are_specific(manifest: Manifest) -> None:
    r = resolve(make_env(torch="2.6.0+cu124", driver="550.54.14"), manifest)
    c = next(c for c in r.candidates if c.entry.filename == OFFICIAL_283_T26_FALSE)
    (reason,) = c.reasons
    assert reason.code == "cxx11abi"
    assert "TRUE" in reason.message and "2.6.0+cu124" in reason.message and "FALSE" in reason.message


def test_codes_are_the_documented_ones(manifest: Manifest) -> None:
    seen = set()
    for trap in TRAPS:
        r = resolve(make_env(**trap.env), manifest, trap.options)
        seen |= {code for c in r.candidates for code in c.codes}
    assert seen <= set(REASONS)
    assert seen == set(REASONS), f"codes never exercised: {set(REASONS) - seen}"


def test_ranking_prefers_newest_flash_attn_then_known_checksum(manifest: Manifest) -> None:
    r = resolve(make_env(torch="2.7.1+cu128"), manifest)
    ranked = [c.entry for c in r.accepted]
    assert [c.rank for c in r.accepted] == list(range(1, len(ranked) + 1))
    versions = [e.fa_key + (0,) * (6 - len(e.fa_key)) for e in ranked if not e.derived]
    assert versions == sorted(versions, reverse=True)
    same_version = [e for e in ranked if e.flash_attn_version == "2.8.3" and e.source == "Dao-AILab"]
    assert same_version[0].sha256 is not None
    # Among equal official wheels, the one whose label tells the truth (TRUE for an ABI-1 torch) comes first.
    names = [e.filename for e in ranked]
    assert names.index(OFFICIAL_283_T27_TRUE) < names.index(OFFICIAL_283_T27_FALSE)


def test_ranking_prefers_closest_cuda_minor_and_newest_rerelease(manifest: Manifest) -> None:
    r = resolve(make_env(torch="2.8.0+cu126", driver="570.86.15"), manifest,
                ResolveOptions(flash_attn_spec="==2.8.3"))
    mjun = [c.entry for c in r.accepted if c.entry.source == "mjun0812"]
    assert mjun, "expected mjun0812 wheels for torch 2.8"
    assert mjun[0].cuda == "12.6"
    copies = [e for e in mjun if e.filename == mjun[0].filename]
    assert [e.release_key for e in copies] == sorted((e.release_key for e in copies), reverse=True)


def test_derived_rows_rank_after_every_listed_one(manifest: Manifest) -> None:
    r = resolve(make_env(torch="2.6.0+cu126", driver="560.35.03"), manifest)
    flags = [c.entry.derived for c in r.accepted]
    assert flags == sorted(flags)
    assert not r.selected or not r.selected.derived


def test_unknown_gpu_index_is_bad_input(manifest: Manifest) -> None:
    with pytest.raises(BadInputError, match="no GPU with index 5"):
        resolve(make_env(), manifest, ResolveOptions(gpu_index=5))


def test_invalid_specifier_is_bad_input(manifest: Manifest) -> None:
    with pytest.raises(BadInputError, match="invalid flash-attn version specifier"):
        resolve(make_env(), manifest, ResolveOptions(flash_attn_spec="2.8.3 or newer"))


@pytest.mark.parametrize(("text", "means"), [
    ("2.7.4", "==2.7.4"), (" 2.7.4 ", "==2.7.4"), ("2.7.*", "==2.7.*"), ("2.8.3.post1", "==2.8.3.post1"),
    ("==2.7.4", "==2.7.4"), (">=2.7,<2.9", "<2.9,>=2.7"), ("~=2.8.0", "~=2.8.0"),
])
def test_a_bare_version_means_exactly_that_version(text: str, means: str) -> None:
    assert str(parse_flash_attn_spec(text)) == means


@pytest.mark.parametrize("text", ["latest", "2.8.3 or newer", ">>2.8", "2.8.*.1"])
def test_unreadable_specifiers_are_bad_input(text: str) -> None:
    with pytest.raises(BadInputError, match="invalid flash-attn version specifier") as caught:
        parse_flash_attn_spec(text)
    assert "'2.8.3'" in (caught.value.hint or "")


def test_resolve_takes_a_bare_version(manifest: Manifest) -> None:
    exact = resolve(make_env(), manifest, ResolveOptions(flash_attn_spec="==2.6.3"))
    bare = resolve(make_env(), manifest, ResolveOptions(flash_attn_spec="2.6.3"))
    assert bare.selected is not None and bare.selected == exact.selected
    assert bare.selected.flash_attn_version == "2.6.3"
    series = resolve(make_env(), manifest, ResolveOptions(flash_attn_spec="2.7.*"))
    assert series.selected is not None and series.selected.flash_attn_version.startswith("2.7.")


def test_unknown_capability_and_driver_skip_checks_with_warnings(manifest: Manifest) -> None:
    r = resolve(make_env(gpus=("",), driver=None), manifest)
    assert r.selected is not None
    assert any("architecture checks skipped" in w for w in r.warnings)
    assert any("driver version is unknown" in w for w in r.warnings)


def test_resolution_document(manifest: Manifest) -> None:
    r = resolve(make_env(), manifest)
    doc = r.to_dict()
    assert doc["schema"] == "vox1-resolution/1"
    assert doc["selected"]["filename"] == r.selected.filename if r.selected else False
    assert len(doc["candidates"]) == len(manifest)
    first = doc["candidates"][0]
    assert set(first) >= {"filename", "accepted", "rank", "reasons"}
    for c in doc["candidates"]:
        assert c["accepted"] == (c["rank"] is not None) == (not c["reasons"])
        for reason in c["reasons"]:
            assert set(reason) == {"code", "message"}
    assert doc["counts"]["accepted"] + doc["counts"]["rejected"] == len(manifest)
    assert isinstance(doc["advice"], list)
    assert doc["environment"]["schema"] == "vox1-env/1"


def test_resolve_wheel_file_checks_a_single_file_name() -> None:
    env = make_env(torch="2.6.0+cu124", driver="550.54.14")
    bad = resolve_wheel_file(env, f"/downloads/{OFFICIAL_283_T26_FALSE}")
    assert not bad.accepted and "cxx11abi" in bad.codes
    good = resolve_wheel_file(env, OFFICIAL_2741_T26_FALSE)
    assert good.accepted and good.rank == 1
    win = resolve_wheel_file(env, "C:\\wheels\\flash_attn-2.8.3+cu124torch2.6-cp311-cp311-win_amd64.whl")
    assert "platform" in win.codes


def test_resolve_wheel_file_rejects_a_name_it_cannot_read() -> None:
    with pytest.raises(BadInputError, match="not a wheel file name"):
        resolve_wheel_file(make_env(), "flash_attn.tar.gz")
    with pytest.raises(BadInputError, match=r"no \+cuXXXtorchX\.Y label"):
        resolve_wheel_file(make_env(), "flash_attn-2.8.3-cp311-cp311-linux_x86_64.whl")


def test_resolver_is_pure_and_never_imports_torch(manifest: Manifest) -> None:
    before = set(sys.modules)
    resolve(make_env(), manifest)
    new = set(sys.modules) - before
    assert not {m for m in new if m.split(".")[0] in ("torch", "subprocess", "requests", "socket")}


def _only(*filenames: str) -> Manifest:
    m = default_manifest()
    return Manifest(entries=tuple(m.by_filename(f)[0] for f in filenames))


def test_advice_for_a_glibc_only_miss() -> None:
    r = resolve(make_env(glibc="2.31"), _only(OFFICIAL_283_T27_TRUE))
    assert r.selected is None
    assert any("fits except for glibc" in a and "2.32" in a and "2.31" in a for a in r.advice)
    (c,) = r.candidates
    assert c.codes == ("glibc",) and "Dao-AILab#1708" in c.reasons[0].message


def test_advice_when_several_rules_fail_names_the_common_reasons() -> None:
    r = resolve(make_env(os="windows", python="3.10.11", torch="2.7.1+cu128", driver="576.02"),
                _only(OFFICIAL_283_T26_TRUE))
    assert r.selected is None
    assert any("most common reasons" in a and "platform" in a for a in r.advice)


def test_advice_when_no_wheel_has_kernels_for_the_gpu() -> None:
    r = resolve(make_env(gpus=("12.0",), driver="575.51.03"), _only(MJUN_263_T27))
    assert r.selected is None
    assert any("no wheel in the manifest has kernels for your GPU" in a for a in r.advice)
    (c,) = r.candidates
    assert "no kernel image is available" in c.reasons[0].message


def test_an_empty_manifest_explains_itself() -> None:
    r = resolve(make_env(), Manifest(entries=()))
    assert r.selected is None and r.candidates == ()
    assert r.advice and r.why == "no wheel fits (0 checked)"


def test_unknown_abi_wheels_are_accepted_with_a_note() -> None:
    aarch = "flash_attn-2.6.3+cu124torch2.5-cp311-cp311-linux_aarch64.whl"
    r = resolve(make_env(machine="aarch64", torch="2.5.1+cu124", driver="550.54.14"), _only(aarch))
    assert r.selected is not None and r.selected.cxx11abi is None
    assert any("C++11 ABI unknown" in n for n in r.accepted[0].notes)


def test_advice_mentions_an_installed_flash_attn(manifest: Manifest) -> None:
    doc = env_doc()
    doc["flash_attn"] = {"version": "2.8.3+cu12torch2.7cxx11abiTRUE"}
    r = resolve(environment_from_dict(doc), manifest, ResolveOptions(flash_attn_spec="==2.8.3"))
    assert any("already installed" in a for a in r.advice)
    doc["flash_attn"] = {"version": "2.7.4.post1"}
    r = resolve(environment_from_dict(doc), manifest, ResolveOptions(flash_attn_spec="==2.8.3"))
    assert any("replaces it with 2.8.3" in a for a in r.advice)


@pytest.mark.parametrize(("wheel", "build"), [
    # torch 2.6 pip wheels are ABI 1 only as +cu126: an ABI-1 wheel needs that build, an ABI-0 one +cu124
    (OFFICIAL_283_T26_TRUE, 'torch 2.6 +cu126 on the same Python has flash-attn 2.8.3'),
    (OFFICIAL_2741_T26_FALSE, 'torch 2.6 +cu124 on the same Python has flash-attn 2.7.4.post1'),
    # the wheel's own CUDA label when torch publishes that build
    ("flash_attn-2.8.3+cu128torch2.7-cp311-cp311-linux_x86_64.whl", 'torch 2.7 +cu128'),
    # no table row for torch 2.13: only what is certain
    ("flash_attn-2.8.3+cu130torch2.13-cp311-cp311-linux_x86_64.whl", "torch 2.13.x (a CUDA 13 build with the C++11 "
                                                                     "ABI TRUE (new ABI))"),
])
def test_torch_advice_names_an_installable_build(wheel: str, build: str) -> None:
    r = resolve(make_env(torch="2.5.1+cu124", driver="590.44.01"), _only(wheel))
    assert r.selected is None
    assert any(build in a for a in r.advice), r.advice


def test_torch_build_table() -> None:
    from vox1_setup.knowledge.torch_builds import TORCH_CUDA_BUILDS, torch_build_for

    assert str(torch_build_for((2, 6), 12, None, linux_abi=True)) == "torch 2.6 +cu126"
    assert str(torch_build_for((2, 6), 12, None, linux_abi=False)) == "torch 2.6 +cu124"
    assert str(torch_build_for((2, 6), 12, "12.8")) == "torch 2.6 +cu126"  # no cu128 build of 2.6
    assert str(torch_build_for((2, 8), 12, "12.8")) == "torch 2.8 +cu128"
    assert torch_build_for((2, 5), 13, None) is None
    assert torch_build_for((2, 99), 12, None) is None
    build = torch_build_for((2, 9), 13, None)
    assert build is not None and build.cuda == "13.0"
    assert build.pip_command == 'pip install "torch==2.9.*" --index-url https://download.pytorch.org/whl/cu130'
    for variants in TORCH_CUDA_BUILDS.values():
        assert list(variants) == sorted(variants) and all(v.startswith("cu") and len(v) == 5 for v in variants)
