"""Property tests over generated environments and the real manifest (hypothesis).

The invariants: a selected wheel never violates any rule of FIELD-NOTES §1 (checked here independently of the
resolver's code), every rejected candidate carries at least one documented reason, accepted ones none, and the
selection is the best-ranked accepted wheel.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.specifiers import SpecifierSet

from tests.support.envs import make_env
from vox1_setup.environment import Environment
from vox1_setup.knowledge import drivers
from vox1_setup.manifest import WheelEntry, default_manifest
from vox1_setup.resolver import CODE_BITS, REASONS, ResolveOptions, _digest, _tag_sets, rank_key, resolve

MANIFEST = default_manifest()

TORCH_BUILDS = ["2.3.1+cu121", "2.4.1+cu124", "2.5.1+cu124", "2.5.1+cu118", "2.6.0+cu124", "2.6.0+cu126",
                "2.7.1+cu118", "2.7.1+cu126", "2.7.1+cu128", "2.8.0+cu128", "2.8.0+cu129", "2.9.0+cu128",
                "2.9.0+cu130", "2.10.0+cu130", "2.11.0+cu126", "2.7.1+cpu", "2.7.1+rocm6.3"]
DRIVERS = [None, "470.82.01", "531.14", "550.54.14", "560.35.03", "570.86.15", "575.51.03", "580.65.06", "590.44.01"]
CAPS = ["", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]
SPECS = [None, None, None, ">=2.7", "<2.8", "==2.6.3", "~=2.8.0"]


@st.composite
def environments(draw: st.DrawFn) -> tuple[Environment, ResolveOptions]:
    os_name = draw(st.sampled_from(["linux", "linux", "linux", "windows"]))
    minor = draw(st.integers(min_value=9, max_value=14))
    gil_disabled = minor >= 13 and draw(st.booleans())
    kwargs: dict[str, Any] = {"os": os_name, "python": f"3.{minor}.1", "gil_disabled": gil_disabled}
    if os_name == "linux":
        kwargs["machine"] = draw(st.sampled_from(["x86_64", "x86_64", "aarch64"]))
        kwargs["glibc"] = draw(st.sampled_from([None, "2.28", "2.31", "2.35", "2.39"]))
    torch = draw(st.sampled_from([*TORCH_BUILDS, None]))
    kwargs["torch"] = torch
    if torch and "+rocm" in torch:
        kwargs["hip"] = "6.3"
    kwargs["cxx11abi"] = draw(st.sampled_from([None, None, True, False]))
    kwargs["driver"] = draw(st.sampled_from(DRIVERS))
    kwargs["gpus"] = tuple(draw(st.lists(st.sampled_from(CAPS), min_size=0, max_size=2)))
    gpu_index = None
    if kwargs["gpus"] and draw(st.booleans()):
        gpu_index = draw(st.integers(min_value=0, max_value=len(kwargs["gpus"]) - 1))
    options = ResolveOptions(gpu_index=gpu_index, flash_attn_spec=draw(st.sampled_from(SPECS)),
                             allow_derived=draw(st.booleans()))
    return make_env(**kwargs), options


def _v2(text: str) -> tuple[int, int]:
    parts = text.split(".")
    return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0


def _torch_abi(env: Environment) -> bool | None:
    """Independent statement of FIELD-NOTES §1.5 for pip wheels."""
    t = env.torch
    assert t is not None and t.version is not None
    if t.cxx11abi is not None:
        return t.cxx11abi
    mm = _v2(t.version)
    if mm <= (2, 5):
        return False
    if mm == (2, 6):
        return t.cuda is not None and _v2(t.cuda) >= (12, 6)
    return True


def violations(env: Environment, e: WheelEntry, options: ResolveOptions) -> list[str]:
    """Every rule of FIELD-NOTES §1 the wheel breaks on this environment."""
    out = []
    tags = set(env.wheel_tags)
    if not any(f"{e.python_tag}-{e.abi_tag}-{p}" in tags for p in e.platform_tags):
        out.append("tags")
    t = env.torch
    if t is None or t.version is None or t.cuda is None or t.hip:
        out.append("no CUDA torch")
    else:
        if _v2(t.version) != _v2(e.torch_mm):
            out.append("torch major.minor")
        if int(t.cuda.split(".")[0]) != int(e.cuda.split(".")[0]):
            out.append("cuda major")
        if env.os == "linux" and e.cxx11abi is not None and e.cxx11abi != _torch_abi(env):
            out.append("cxx11abi")
    if env.driver is not None:
        major = int(e.cuda.split(".")[0])
        floor = drivers.MAJOR_FLOOR[major][1 if env.os == "windows" else 0]
        if drivers.parse_driver(env.driver.version) < drivers.parse_driver(floor):
            out.append("driver floor")
        if env.driver.cuda and int(env.driver.cuda.split(".")[0]) < major:
            out.append("driver max CUDA")
    if env.os == "linux" and env.glibc and e.min_glibc and _v2(e.min_glibc) > _v2(env.glibc):
        out.append("glibc")
    gpus = [g for g in env.gpus if options.gpu_index is None or g.index == options.gpu_index]
    if not gpus:
        out.append("no GPU")
    for g in gpus:
        cap = g.capability_tuple
        if cap is None:
            continue
        if cap < (8, 0) and (options.gpu_index is not None or all(
                (h.capability_tuple or (99, 0)) < (8, 0) for h in env.gpus)):
            out.append("GPU older than Ampere")
        if cap >= (8, 0) and not any(int(a[3:-1]) == cap[0] and int(a[-1]) <= cap[1] for a in e.gpu_archs):
            out.append("no kernels for the GPU")
        if cap >= (10, 0):
            fa = tuple(int(x) for x in e.flash_attn_version.replace("post", "").split(".")[:3])
            if fa < (2, 7, 3):
                out.append("Blackwell needs flash-attn ≥ 2.7.3")
            if t is not None and t.version and (_v2(t.version) < (2, 7) or _v2(t.cuda or "0.0") < (12, 8)):
                out.append("Blackwell needs torch ≥ 2.7 cu128+")
    if int(e.flash_attn_version.split(".")[0]) < 2:
        out.append("not FA2")
    if options.flash_attn_spec and not SpecifierSet(options.flash_attn_spec).contains(e.flash_attn_version):
        out.append("specifier")
    if e.derived and not options.allow_derived:
        out.append("derived")
    return out


@settings(deadline=None, max_examples=60)
@given(environments())
def test_selected_wheel_never_violates_a_rule(case: tuple[Environment, ResolveOptions]) -> None:
    env, options = case
    r = resolve(env, MANIFEST, options)
    if r.selected is not None:
        assert violations(env, r.selected, options) == []
    for c in r.accepted[:25]:
        assert violations(env, c.entry, options) == [], c.entry.filename


@settings(deadline=None, max_examples=60)
@given(environments())
def test_verdicts_are_complete_and_the_best_is_selected(case: tuple[Environment, ResolveOptions]) -> None:
    env, options = case
    r = resolve(env, MANIFEST, options)
    assert len(r.candidates) == len(MANIFEST)
    for c in r.candidates:
        if c.accepted:
            assert c.reasons == () and c.rank is not None
        else:
            assert c.reasons and c.rank is None
            assert all(reason.code in REASONS and reason.message for reason in c.reasons)
    accepted = r.accepted
    assert [c.rank for c in accepted] == list(range(1, len(accepted) + 1))
    if accepted:
        t = _digest(env, options)
        best = min(accepted, key=lambda c: rank_key(t, c.entry))
        assert r.selected == best.entry == accepted[0].entry
    else:
        assert r.selected is None and r.advice


@settings(deadline=None, max_examples=40)
@given(environments())
def test_a_wheel_breaking_a_rule_is_rejected(case: tuple[Environment, ResolveOptions]) -> None:
    """The converse on a sample: a wheel the independent checker faults is never accepted."""
    env, options = case
    r = resolve(env, MANIFEST, options)
    for c in r.candidates[::97]:
        if violations(env, c.entry, options):
            assert not c.accepted, c.entry.filename


@settings(deadline=None, max_examples=40)
@given(environments())
def test_tag_sets_answer_what_the_full_tag_list_answers(case: tuple[Environment, ResolveOptions]) -> None:
    """The resolver checks (python, abi) pairs and platforms separately instead of ~900 derived triples."""
    env, _ = case
    triples = [t.split("-", 2) for t in env.wheel_tags]
    pairs, platforms = _tag_sets(env)
    assert pairs == {(p[0], p[1]) for p in triples}
    assert platforms == {p[2] for p in triples} | {"any"}


@settings(deadline=None, max_examples=30)
@given(environments())
def test_reason_counts_count_each_code_once_per_candidate(case: tuple[Environment, ResolveOptions]) -> None:
    env, options = case
    r = resolve(env, MANIFEST, options)
    naive: dict[str, int] = {}
    for c in r.candidates:
        for code in set(c.codes):
            naive[code] = naive.get(code, 0) + 1
        assert c.mask == sum(CODE_BITS[code] for code in set(c.codes))
    assert r.reason_counts() == naive
