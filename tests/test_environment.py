"""The Environment value: vox1-env/1 documents (hand-written, malformed, round trip) and tag derivation."""

from __future__ import annotations

import codecs
import json
import sysconfig
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging import _manylinux, _musllinux
from packaging import tags as ptags

from vox1_setup.environment import (
    ENV_SCHEMA,
    PythonInfo,
    derive_tags,
    environment_from_dict,
    environment_to_dict,
    load_environment_file,
    platform_tags,
)
from vox1_setup.errors import BadInputError, ExitCode

MINIMAL = {
    "os": "windows",
    "machine": "AMD64",
    "python": {"version": "3.10.11"},
    "torch": {"version": "2.7.1+cu128", "cuda": "12.8"},
    "gpus": [{"name": "NVIDIA GeForce RTX 4070 Ti"}],
    "driver": {"version": "576.02"},
}


def write(tmp_path: Path, doc: Any, name: str = "env.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_hand_written_minimal_file_loads(tmp_path: Path) -> None:
    env = load_environment_file(write(tmp_path, MINIMAL))
    assert (env.os, env.machine, env.glibc) == ("windows", "amd64", None)
    assert env.python.version == "3.10.11" and env.python.implementation == "cpython"
    assert env.wheel_tags[0] == "cp310-cp310-win_amd64"
    assert env.torch is not None
    assert (env.torch.version, env.torch.cuda, env.torch.cxx11abi, env.torch.cuda_available) == (
        "2.7.1+cu128", "12.8", None, None)
    assert env.torch.importable and env.torch.build == "cuda"
    assert env.driver is not None and (env.driver.version, env.driver.cuda) == ("576.02", None)
    (gpu,) = env.gpus
    assert gpu.index == 0 and gpu.memory_total_mib is None
    assert gpu.compute_capability == "8.9"  # unknown in the file, known from the name table
    assert gpu.source == "file+name-table"
    assert env.flash_attn is None and dict(env.host) == {}


def test_linux_minimal_file_derives_manylinux_tags(tmp_path: Path) -> None:
    doc: dict[str, Any] = {"os": "linux", "machine": "x86_64", "glibc": "2.31", "python": {"version": "3.11"},
                           "torch": None, "gpus": [], "driver": None}
    env = load_environment_file(write(tmp_path, doc))
    assert env.wheel_tags[:2] == ("cp311-cp311-linux_x86_64", "cp311-cp311-manylinux_2_31_x86_64")
    assert "cp311-cp311-manylinux_2_32_x86_64" not in env.wheel_tags
    assert env.torch is None and env.driver is None and env.gpus == ()


def test_free_threaded_python_gets_t_abi(tmp_path: Path) -> None:
    doc: dict[str, Any] = {"os": "linux", "machine": "x86_64", "glibc": "2.35", "torch": None, "gpus": [],
                           "driver": None, "python": {"version": "3.13.1", "gil_disabled": True}}
    env = load_environment_file(write(tmp_path, doc))
    assert env.wheel_tags[0] == "cp313-cp313t-linux_x86_64"
    assert not any("abi3-" in t for t in env.wheel_tags)


@pytest.mark.parametrize(("change", "field"), [
    ({"os": "beos"}, "env.os"),
    ({"os": 5}, "env.os"),
    ({"machine": None}, "env.machine"),
    ({"python": None}, "env.python"),
    ({"python": {"version": "three"}}, "env.python.version"),
    ({"python": {"version": "3.10", "tags": [1, 2]}}, "env.python.tags"),
    ({"torch": {"cuda": "12.8"}}, "env.torch.version"),
    ({"torch": {"version": "2.7.1", "cxx11abi": "yes"}}, "env.torch.cxx11abi"),
    ({"torch": "2.7.1"}, "env.torch"),
    ({"gpus": {"name": "x"}}, "env.gpus"),
    ({"gpus": ["RTX 4090"]}, "env.gpus[0]"),
    ({"gpus": [{"name": "x", "compute_capability": "sm_89"}]}, "env.gpus[0].compute_capability"),
    ({"gpus": [{"name": "x", "memory_total_mib": "12 GB"}]}, "env.gpus[0].memory_total_mib"),
    ({"driver": {"cuda": "12.9"}}, "env.driver.version"),
    ({"driver": {"version": "latest"}}, "env.driver.version"),
    ({"driver": {"version": "576.02", "cuda": "twelve"}}, "env.driver.cuda"),
    ({"machine": ""}, "env.machine"),
    ({"glibc": "new"}, "env.glibc"),
    ({"torch": {"version": "banana"}}, "env.torch.version"),
    ({"torch": {"version": "2.7.1", "cuda": "twelve"}}, "env.torch.cuda"),
    ({"torch": {"version": "2.7.1", "arch_list": [80, 90]}}, "env.torch.arch_list"),
    ({"torch": {"version": "2.7.1", "devices": [{"index": "x", "capability": "8.9"}]}}, "env.torch.devices[0].index"),
    ({"torch": {"version": "2.7.1", "devices": [{"capability": "sm_89"}]}}, "env.torch.devices[0].capability"),
    ({"torch": {"version": "2.7.1", "devices": [{"name": "RTX 4090"}]}}, "env.torch.devices[0].capability"),
    ({"flash_attn": {"version": "latest"}}, "env.flash_attn.version"),
    ({"schema": "vox1-env/99"}, "schema"),
])
def test_malformed_file_names_the_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    path = write(tmp_path, {**MINIMAL, **change})
    with pytest.raises(BadInputError) as info:
        load_environment_file(path)
    assert info.value.exit_code == ExitCode.BAD_INPUT
    assert f"{path}: {field}" in info.value.message
    assert info.value.hint


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"os": "linux",\n  oops}', encoding="utf-8")
    with pytest.raises(BadInputError, match=r"not valid JSON \(line 2"):
        load_environment_file(bad)
    with pytest.raises(BadInputError, match="cannot read environment file"):
        load_environment_file(tmp_path / "absent.json")
    with pytest.raises(BadInputError, match="expected a JSON object"):
        load_environment_file(write(tmp_path, [MINIMAL]))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_windows_encodings_load(tmp_path: Path, encoding: str) -> None:
    """PowerShell 5's `>` writes UTF-16 with a BOM, Notepad UTF-8 with a BOM."""
    path = tmp_path / "env.json"
    path.write_bytes(json.dumps(MINIMAL).encode(encoding))
    if encoding == "utf-16":
        assert path.read_bytes()[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    assert load_environment_file(path).python.version == "3.10.11"


FULL = {
    "schema": ENV_SCHEMA, "os": "linux", "machine": "x86_64", "glibc": "2.35",
    "python": {"version": "3.10.12", "implementation": "cpython", "gil_disabled": False,
               "executable": "/opt/vox1/python/bin/python3", "tags": ["cp310-cp310-linux_x86_64", "py3-none-any"],
               "soabi": "cpython-310-x86_64-linux-gnu", "site_packages": "/opt/vox1/python/lib/site-packages",
               "debug": False, "platform": "linux-x86_64"},
    "torch": {"version": "2.7.1+cu128", "cuda": "12.8", "hip": None, "cxx11abi": True, "cuda_available": True,
              "device_count": 1, "devices": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "capability": "8.9"}],
              "arch_list": ["sm_80", "sm_86", "sm_89", "sm_90", "sm_120"], "import_error": None,
              "location": "/opt/vox1/python/lib/site-packages/torch", "warnings": []},
    "driver": {"version": "570.133.07", "cuda": "12.8", "source": "nvml"},
    "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9",
              "memory_total_mib": 24564, "memory_free_mib": 23000, "uuid": "GPU-aaaa", "source": "nvml"}],
    "flash_attn": {"version": "2.7.4.post1", "location": "/opt/vox1/python/lib/site-packages"},
    "packages": {"torch": "2.7.1+cu128", "flash-attn": "2.7.4.post1"},
    "host": {"os_name": "Ubuntu 22.04.4 LTS", "ram_total_mib": 64000, "disk": {"cache": {"free_mib": 1}}},
    "sources": {"driver.version": "nvml"},
}


def test_full_document_round_trips() -> None:
    assert environment_to_dict(environment_from_dict(FULL)) == FULL


def test_document_keys_are_the_public_shape() -> None:
    doc = environment_to_dict(environment_from_dict(MINIMAL))
    for key in ("schema", "os", "machine", "glibc", "python", "torch", "driver", "gpus", "flash_attn", "host"):
        assert key in doc
    assert doc["schema"] == ENV_SCHEMA
    assert set(doc["python"]) >= {"version", "implementation", "gil_disabled", "executable", "tags"}
    assert set(doc["torch"]) >= {"version", "cuda", "cxx11abi", "cuda_available", "arch_list", "import_error"}
    assert set(doc["gpus"][0]) >= {"index", "name", "compute_capability", "memory_total_mib", "memory_free_mib"}
    # written once, read back identically (derived tags included)
    assert environment_to_dict(environment_from_dict(doc)) == doc


def test_broken_torch_is_representable() -> None:
    env = environment_from_dict({**MINIMAL, "torch": {"version": None, "import_error": "ImportError: libc10.so"}})
    assert env.torch is not None and not env.torch.importable and env.torch.build == "unknown"


# ------------------------------------------------------------------------------------------------ tags


def test_derived_tags_match_sys_tags_of_this_interpreter() -> None:
    """Same facts, same answer as packaging.tags.sys_tags() computed inside the interpreter."""
    import platform
    import sys

    glibc = platform.libc_ver()[1] or None
    py = PythonInfo(version=platform.python_version(), gil_disabled=bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
                    debug=bool(sysconfig.get_config_var("Py_DEBUG")))
    os_name = platform.system().lower()
    if os_name != "linux" or sys.implementation.name != "cpython":
        pytest.skip("this comparison runs on the Linux CPython CI")
    assert list(derive_tags("linux", platform.machine(), glibc, py)) == [str(t) for t in ptags.sys_tags()]


@pytest.mark.parametrize(("arch", "glibc", "musl", "is_32bit"), [
    ("x86_64", "2.17", None, False),
    ("x86_64", "2.39", None, False),
    ("aarch64", "2.28", None, False),
    ("aarch64", "2.17", None, False),
    ("x86_64", "2.35", None, True),
    ("aarch64", "2.31", None, True),
    ("x86_64", None, "1.2", False),
    ("aarch64", None, "1.1", False),
    ("ppc64le", "2.34", None, False),
])
def test_linux_platforms_mirror_packaging(monkeypatch: pytest.MonkeyPatch, arch: str, glibc: str | None,
                                         musl: str | None, is_32bit: bool) -> None:
    """packaging's own Linux platform logic, fed the same facts, yields the same list in the same order."""
    monkeypatch.setattr(sysconfig, "get_platform", lambda: f"linux-{arch}")
    monkeypatch.setattr(_manylinux, "_have_compatible_abi", lambda executable, archs: glibc is not None)
    monkeypatch.setattr(_manylinux, "_get_glibc_version",
                        lambda: tuple(int(p) for p in glibc.split(".")) if glibc else (-1, -1))
    monkeypatch.setattr(_musllinux, "_get_musl_version", lambda executable: (
        _musllinux._MuslVersion(*(int(p) for p in musl.split("."))) if musl else None))
    expected = list(ptags._linux_platforms(is_32bit))
    assert platform_tags("linux", arch, glibc, musl=musl, is_32bit=is_32bit) == expected


def test_windows_and_mac_platforms() -> None:
    assert platform_tags("windows", "amd64", None) == ["win_amd64"]
    assert platform_tags("windows", "amd64", None, is_32bit=True) == ["win32"]
    assert platform_tags("windows", "arm64", None) == ["win_arm64"]
    assert platform_tags("darwin", "arm64", None, "14.5") == list(ptags.mac_platforms((14, 5), "arm64"))


def test_cpython_tag_structure_for_another_version() -> None:
    py = PythonInfo(version="3.12.4")
    tags = derive_tags("windows", "amd64", None, py)
    expected = [str(t) for t in ptags.cpython_tags((3, 12), ["cp312"], ["win_amd64"])]
    expected += [str(t) for t in ptags.compatible_tags((3, 12), "cp312", ["win_amd64"])]
    assert list(tags) == list(dict.fromkeys(expected))
    assert tags[0] == "cp312-cp312-win_amd64" and "py3-none-any" in tags


# --------------------------------------------------------------------------------------- property: round trip

_versions = st.from_regex(r"\A[0-9]{1,3}\.[0-9]{1,3}(\.[0-9]{1,3})?\Z")
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
_gpu = st.fixed_dictionaries({
    "index": st.integers(0, 15), "name": _text,
    "compute_capability": st.none() | st.from_regex(r"\A[0-9]{1,2}\.[0-9]\Z"),
    "memory_total_mib": st.none() | st.integers(0, 200_000), "memory_free_mib": st.none() | st.integers(0, 200_000),
    "uuid": st.none() | _text, "source": st.none() | st.sampled_from(["nvml", "nvidia-smi", "proc"]),
})
_torch = st.none() | st.fixed_dictionaries({
    "version": _versions, "cuda": st.none() | _versions, "hip": st.none(), "cxx11abi": st.none() | st.booleans(),
    "cuda_available": st.none() | st.booleans(), "device_count": st.none() | st.integers(0, 8),
    "devices": st.lists(st.fixed_dictionaries({"index": st.integers(0, 7), "name": _text,
                                               "capability": st.from_regex(r"\A[0-9]\.[0-9]\Z")}), max_size=2),
    "arch_list": st.none() | st.lists(st.sampled_from(["sm_80", "sm_86", "sm_90", "sm_120"]), max_size=4),
    "import_error": st.none(), "location": st.none() | _text, "warnings": st.lists(_text, max_size=2),
})
_doc = st.fixed_dictionaries({
    "schema": st.just(ENV_SCHEMA),
    "os": st.sampled_from(["linux", "windows", "darwin"]),
    "machine": st.sampled_from(["x86_64", "aarch64"]),
    "glibc": st.none() | st.sampled_from(["2.17", "2.28", "2.31", "2.35", "2.39"]),
    "python": st.fixed_dictionaries({
        "version": st.from_regex(r"\A3\.1[0-4]\.[0-9]{1,2}\Z"), "implementation": st.just("cpython"),
        "gil_disabled": st.booleans(), "executable": st.none() | _text, "soabi": st.none(),
        "site_packages": st.none() | _text, "debug": st.booleans(), "platform": st.none()}),
    "torch": _torch,
    "driver": st.none() | st.fixed_dictionaries({"version": _versions, "cuda": st.none() | _versions,
                                                 "source": st.none() | st.just("nvml")}),
    "gpus": st.lists(_gpu, max_size=3),
    "flash_attn": st.none() | st.fixed_dictionaries({"version": _versions, "location": st.none() | _text}),
    "packages": st.dictionaries(st.sampled_from(["torch", "pip", "flash-attn"]), _versions),
    "host": st.dictionaries(st.sampled_from(["os_name", "cpu_count"]), _text),
    "sources": st.dictionaries(st.sampled_from(["gpus", "driver.version"]), _text),
})


@settings(max_examples=60, deadline=None)
@given(_doc)
def test_any_written_document_reads_back_identically(doc: dict[str, Any]) -> None:
    once = environment_to_dict(environment_from_dict(doc))
    assert environment_to_dict(environment_from_dict(json.loads(json.dumps(once)))) == once
    # everything given (except derived tags and a capability the table could fill in) is preserved
    assert {k: v for k, v in once.items() if k not in ("python", "gpus", "machine")} == {
        k: v for k, v in doc.items() if k not in ("python", "gpus", "machine")}


def test_pypy_tags_use_the_targets_abi_not_ours() -> None:
    from vox1_setup.environment import generic_abis

    assert generic_abis("pypy310-pp73-x86_64-linux-gnu") == ["pypy310_pp73"]
    assert generic_abis("graalpy-38-native-x86_64-darwin") == ["graalpy_38_native"]
    assert generic_abis(None) == []
    py = PythonInfo(version="3.10.14", implementation="pypy", soabi="pypy310-pp73-x86_64-linux-gnu")
    tags = derive_tags("linux", "x86_64", "2.35", py)
    assert tags[0] == "pp310-pypy310_pp73-linux_x86_64"
    assert "pp3-none-any" in tags and not any(t.startswith("cp") for t in tags)


def test_documented_examples_load() -> None:
    """docs/env-schema.md is the public contract: its examples must stay valid."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "env-schema.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
    assert len(blocks) == 2
    full, minimal = (environment_from_dict(json.loads(b)) for b in blocks)
    assert full.gpus[0].compute_capability == minimal.gpus[0].compute_capability == "8.9"
    assert full.torch is not None and full.torch.cxx11abi is False


# ------------------------------------------------------------------------------- torch's local version label


@pytest.mark.parametrize(("version", "build", "cuda", "hip"), [
    ("2.7.1+cu128", "cuda", "12.8", None),
    ("2.0.1+cu118", "cuda", "11.8", None),
    ("2.9.0+cu130", "cuda", "13.0", None),
    ("2.5.1+rocm6.2", "rocm", None, "6.2"),
    ("2.5.1+rocm6.2.4", "rocm", None, "6.2.4"),
    ("2.13.0+cpu", "cpu", None, None),
    ("2.7.1", "cpu", None, None),
])
def test_torch_build_comes_from_the_version_label_when_cuda_is_not_given(version: str, build: str,
                                                                         cuda: str | None, hip: str | None) -> None:
    env = environment_from_dict({**MINIMAL, "torch": {"version": version}})
    assert env.torch is not None
    assert (env.torch.build, env.torch.cuda, env.torch.hip) == (build, cuda, hip)
    if cuda:
        assert env.sources["torch.cuda"] == "file (torch.version's +cu label)"
    # what is written once reads back the same
    doc = environment_to_dict(env)
    assert environment_to_dict(environment_from_dict(doc)) == doc


def test_explicit_null_cuda_is_kept_and_given_cuda_wins() -> None:
    said_cpu = environment_from_dict({**MINIMAL, "torch": {"version": "2.7.1+cu128", "cuda": None}})
    assert said_cpu.torch is not None and said_cpu.torch.build == "cpu" and "torch.cuda" not in said_cpu.sources
    given = environment_from_dict({**MINIMAL, "torch": {"version": "2.7.1+cu128", "cuda": "12.9"}})
    assert given.torch is not None and given.torch.cuda == "12.9"
    rocm = environment_from_dict({**MINIMAL, "torch": {"version": "2.7.1+cu128", "hip": "6.2"}})
    assert rocm.torch is not None and rocm.torch.cuda is None and rocm.torch.build == "rocm"


def test_hand_written_cuda_torch_without_cuda_field_resolves(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The user's file: torch 2.7.1+cu128 on an RTX 4090, no torch.cuda field."""
    from vox1_setup.cli import run_cli

    path = write(tmp_path, {"os": "windows", "machine": "amd64", "python": {"version": "3.11.2"},
                            "torch": {"version": "2.7.1+cu128"},
                            "gpus": [{"index": 0, "name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}],
                            "driver": {"version": "576.02"}})
    assert run_cli(["resolve", "--env", str(path)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "selected: flash_attn-" in out and "cu128torch2.7-cp311-cp311-win_amd64.whl" in out
    assert "no-cuda-torch" not in out
