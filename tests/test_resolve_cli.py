"""`vox1-setup resolve`: human and JSON output, --explain, exit codes, manifests from anywhere, live round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.envs import env_doc
from tests.support.http_server import FileServer
from tests.support.venvs import make_venv
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode
from vox1_setup.manifest import Manifest, default_manifest, dump_manifest


def write_env(tmp_path: Path, name: str = "env.json", **kwargs: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(env_doc(**kwargs)), encoding="utf-8")
    return path


def test_selected_wheel_human_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(env)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.startswith("selected: flash_attn-2.8.3")
    assert "Dao-AILab" in out and "why: newest flash-attn" in out
    assert "for: torch 2.7.1+cu128 · Python 3.11.9 · linux x86_64" in out


def test_checksum_status_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(env), "--flash-attn", "==2.8.3"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "sha256 pinned (" in out


def test_json_document_and_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ok = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(ok), "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "vox1-resolution/1"
    assert doc["selected"]["filename"].startswith("flash_attn-2.8.3")
    assert len(doc["candidates"]) == len(default_manifest())
    assert {"filename", "accepted", "rank", "reasons"} <= set(doc["candidates"][-1])

    turing = write_env(tmp_path, "turing.json", gpus=("7.5",), gpu_names=("NVIDIA GeForce RTX 2080",))
    assert run_cli(["--json", "resolve", "--env", str(turing)]) == ExitCode.NO_WHEEL
    doc = json.loads(capsys.readouterr().out)
    assert doc["selected"] is None
    assert doc["candidates"][0]["reasons"][0]["code"] == "gpu-unsupported"
    assert any("sm_75" in a and "sdpa" in a for a in doc["advice"])


def test_no_wheel_human_output_explains(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, os="windows", python="3.13.1", torch="2.5.1+cu124", driver="576.02")
    assert run_cli(["resolve", "--env", str(env)]) == ExitCode.NO_WHEEL
    captured = capsys.readouterr()
    assert "advice: no wheel for torch 2.5.1+cu124 + Python 3.13" in captured.out
    assert "flash-attn 2.8.3" in captured.out
    assert "error: no prebuilt flash-attn wheel fits" in captured.err
    assert "--explain" in captured.err


def test_explain_groups_rejections_by_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(env), "--explain"]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "accepted: " in out and "     1. flash_attn-2.8.3" in out
    assert "rejected: " in out
    assert "  python-tag: " in out and "× built for cp310-cp310; the target is Python 3.11" in out
    assert "  torch-version: " in out and "  cxx11abi: " in out
    assert "(-v lists all)" in out
    lines = out.splitlines()
    assert len(lines) < 120, "4,000 rows must stay readable"
    assert run_cli(["resolve", "--env", str(env), "--explain", "-v"]) == ExitCode.OK
    verbose = capsys.readouterr().out
    assert "flash_attn-2.8.3+cu128torch2.8-cp312-cp312-win_amd64.whl" in verbose  # every rejected file listed


def test_quiet_prints_only_the_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "-q", "--env", str(env)]) == ExitCode.OK
    out = capsys.readouterr().out.strip()
    assert out.startswith("https://github.com/") and out.endswith(".whl") and "\n" not in out


def test_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, gpus=("8.9", "7.5"))
    assert run_cli(["resolve", "--env", str(env), "--json"]) == ExitCode.OK
    captured = capsys.readouterr()
    json.loads(captured.out)
    assert "warning: GPU 1" in captured.err


def test_options_reach_the_resolver(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, gpus=("8.6", "12.0"), driver="575.51.03")
    assert run_cli(["resolve", "--env", str(env), "--gpu", "0", "--flash-attn", "==2.6.3", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["selected"]["flash_attn_version"] == "2.6.3" and doc["gpu_indices"] == [0]
    assert doc["options"] == {"gpu_index": 0, "flash_attn_spec": "==2.6.3", "allow_derived": True}
    derived = write_env(tmp_path, "d.json", python="3.9.18", torch="2.6.0+cu118", driver="550.54.14")
    assert run_cli(["resolve", "--env", str(derived), "--no-derived", "--json"]) == ExitCode.NO_WHEEL
    capsys.readouterr()


@pytest.mark.parametrize(("args", "fragment"), [
    (["--gpu", "3"], "no GPU with index 3"),
    (["--flash-attn", "latest"], "invalid flash-attn version specifier"),
    (["--flash-attn", "2.8.3 or newer"], "invalid flash-attn version specifier"),
    (["--python", sys.executable], "mutually exclusive"),
    (["--manifest", "/nonexistent/wheels.json"], "cannot read manifest"),
])
def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(env), *args]) == ExitCode.BAD_INPUT
    assert fragment in capsys.readouterr().err


def test_bad_env_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "env.json"
    bad.write_text('{"schema": "vox1-env/1", "os": "plan9"}', encoding="utf-8")
    assert run_cli(["resolve", "--env", str(bad)]) == ExitCode.BAD_INPUT
    assert "env.os" in capsys.readouterr().err


def _one_wheel_manifest() -> bytes:
    name = "flash_attn-2.7.4.post1+cu12torch2.7cxx11abiTRUE-cp311-cp311-linux_x86_64.whl"
    keep = default_manifest().by_filename(name)
    return dump_manifest(Manifest(entries=keep[:1]))


def test_manifest_from_option_env_var_and_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path)
    path = tmp_path / "lab.json"
    path.write_bytes(_one_wheel_manifest())
    assert run_cli(["resolve", "--env", str(env), "--manifest", str(path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["selected"]["flash_attn_version"] == "2.7.4.post1" and doc["manifest"]["entries"] == 1
    monkeypatch.setenv("VOX1_MANIFEST", str(path))
    assert run_cli(["resolve", "--env", str(env), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["origin"] == str(path)
    monkeypatch.delenv("VOX1_MANIFEST")
    with FileServer() as srv:
        url = srv.add("/lab/wheels.json", _one_wheel_manifest())
        assert run_cli(["resolve", "--env", str(env), "--manifest", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["origin"] == url


def test_cli_process_never_imports_torch(tmp_path: Path) -> None:
    env = write_env(tmp_path)
    code = ("import sys; from vox1_setup.cli import run_cli; "
            f"rc = run_cli(['resolve', '--env', {str(env)!r}, '--explain']); "
            "print(rc, 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.strip().endswith("0 False")


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("schema", "selected", "candidates", "advice", "warnings", "why", "counts")}


@pytest.mark.slow
def test_detect_json_then_resolve_env_equals_resolving_live(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Round trip: `detect --json` from the target, fed to `resolve --env`, gives the live answer."""
    py = make_venv(tmp_path / "target venv", pip=False, real_torch=True)
    env_file = tmp_path / "env.json"
    assert run_cli(["detect", "--python", str(py), "--json", "-o", str(env_file)]) == ExitCode.OK
    capsys.readouterr()
    from_file = run_cli(["resolve", "--env", str(env_file), "--json"])
    doc_file = json.loads(capsys.readouterr().out)
    live = run_cli(["resolve", "--python", str(py), "--json"])
    doc_live = json.loads(capsys.readouterr().out)
    assert from_file == live
    assert _comparable(doc_file) == _comparable(doc_live)
    # This runner has the CPU build of torch: the answer is a refusal naming it.
    assert doc_live["selected"] is None
    codes = {r["code"] for r in doc_live["candidates"][0]["reasons"]}
    assert "no-cuda-torch" in codes
    assert doc_live["environment"]["torch"]["version"] == doc_file["environment"]["torch"]["version"]


@pytest.mark.parametrize("kwargs", [{}, {"gpus": ("7.5",)}, {"os": "windows", "python": "3.13.1",
                                                             "torch": "2.5.1+cu124", "driver": "576.02"}])
def test_json_text_is_the_resolution_document(kwargs: dict[str, Any]) -> None:
    """The hand-written candidate lines parse to exactly `Resolution.to_dict()`, one line per candidate."""
    from vox1_setup.commands.resolve import resolution_json
    from vox1_setup.environment import environment_from_dict
    from vox1_setup.resolver import resolve

    r = resolve(environment_from_dict(env_doc(**kwargs)), default_manifest())
    text = resolution_json(r)
    assert json.loads(text) == json.loads(json.dumps(r.to_dict()))
    assert sum(1 for line in text.splitlines() if line.startswith('    {"filename": ')) == len(r.candidates)
    empty = resolve(environment_from_dict(env_doc(**kwargs)), Manifest(entries=()))
    assert json.loads(resolution_json(empty)) == json.loads(json.dumps(empty.to_dict()))


def test_explain_shows_near_misses_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, os="windows", python="3.13.1", torch="2.5.1+cu124", driver="576.02")
    assert run_cli(["resolve", "--env", str(env), "--explain"]) == ExitCode.NO_WHEEL
    out = capsys.readouterr().out
    assert "accepted: none" in out
    near = out.index("near misses: ")
    assert near < out.index("rejected: 4")
    section = out[near:out.index("rejected: 4")]
    # newest flash-attn first, each file once, with its single reason
    assert "  torch-version: " in section and "  python-tag: " in section
    assert "flash_attn-2.8.3+cu124torch2.5-cp312-cp312-win_amd64.whl: built for cp312-cp312" in section
    assert "flash_attn-2.5.9+cu124torch2.5-cp312-cp312-win_amd64.whl" not in section  # older: beyond the first 3
    assert run_cli(["resolve", "--env", str(env), "--explain", "-v"]) == ExitCode.NO_WHEEL
    verbose = capsys.readouterr().out
    assert "flash_attn-2.5.9+cu124torch2.5-cp312-cp312-win_amd64.whl: built for cp312-cp312" in verbose


def test_single_file_candidates_carry_their_code_mask() -> None:
    from vox1_setup.environment import environment_from_dict
    from vox1_setup.resolver import CODE_BITS, resolve_wheel_file

    env = environment_from_dict(env_doc(torch="2.6.0+cu124", driver="550.54.14"))
    c = resolve_wheel_file(env, "flash_attn-2.8.3+cu12torch2.7cxx11abiTRUE-cp312-cp312-win_amd64.whl")
    assert set(c.codes) == {"platform", "python-tag", "torch-version"}
    assert c.mask == CODE_BITS["platform"] | CODE_BITS["python-tag"] | CODE_BITS["torch-version"]


@pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a shebang script")
def test_round_trip_with_a_cuda_torch_and_a_gpu_selects_the_same_wheel(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Round trip on a machine where a wheel fits: a CUDA torch fixture in a real venv, an RTX 4070 Ti answering
    through a stand-in nvidia-smi; `detect --json` → `resolve --env` selects what resolving live selects."""
    from tests.fixtures.nvidia_fakes import install_fake_smi
    from tests.fixtures.torch_fixtures import CUDA_TORCH, NVIDIA_NAMESPACE
    from tests.support.venvs import site_packages, write_fixture_package

    py = make_venv(tmp_path / "vox 1 python", pip=False)
    write_fixture_package(site_packages(tmp_path / "vox 1 python"), "torch", CUDA_TORCH, "2.7.1+cu128")
    write_fixture_package(site_packages(tmp_path / "vox 1 python"), "nvidia", NVIDIA_NAMESPACE, "9.1.0.70",
                          dist_name="nvidia-cudnn-cu12")
    monkeypatch.setenv("VOX1_NO_NVML", "1")
    install_fake_smi(tmp_path / "bin", monkeypatch, query="smi_query_windows_576_rtx4070ti.csv",
                     plain="smi_plain_windows_576_rtx4070ti.txt")
    env_file = tmp_path / "env.json"
    assert run_cli(["detect", "--python", str(py), "--json", "-o", str(env_file)]) == ExitCode.OK
    capsys.readouterr()
    assert run_cli(["resolve", "--env", str(env_file), "--json"]) == ExitCode.OK
    doc_file = json.loads(capsys.readouterr().out)
    assert run_cli(["resolve", "--python", str(py), "--json"]) == ExitCode.OK
    doc_live = json.loads(capsys.readouterr().out)
    assert _comparable(doc_file) == _comparable(doc_live)
    assert doc_live["selected"]["torch_mm"] == "2.7" and doc_live["selected"]["cuda"].startswith("12")
    assert doc_live["gpu_indices"] == [0] and "RTX 4070 Ti" in doc_live["target"]


def test_no_nvidia_gpu_gives_no_cuda_torch_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, torch="2.7.1+cpu", gpus=(), driver=None)
    assert run_cli(["resolve", "--env", str(env)]) == ExitCode.NO_WHEEL
    out = capsys.readouterr().out
    assert "advice: no NVIDIA GPU was found: keep attention on sdpa" in out
    assert "CUDA build" not in out and "pip install torch" not in out and "resolve again" not in out


def test_quiet_error_carries_the_advice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = write_env(tmp_path, gpus=("7.5",), gpu_names=("Tesla T4",))
    assert run_cli(["resolve", "-q", "--env", str(env)]) == ExitCode.NO_WHEEL
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "your GPU (Tesla T4, sm_75, Turing) cannot run FlashAttention 2: keep attention on sdpa" in captured.err
    assert "advice above" not in captured.err and "--explain" in captured.err
    assert run_cli(["resolve", "--env", str(env)]) == ExitCode.NO_WHEEL
    captured = capsys.readouterr()
    assert "advice: your GPU (Tesla T4" in captured.out and "read the advice above" in captured.err


@pytest.mark.parametrize(("given", "version"), [("2.6.3", "2.6.3"), ("2.7.*", "2.7.")])
def test_flash_attn_takes_a_bare_version(tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str,
                                         version: str) -> None:
    env = write_env(tmp_path)
    assert run_cli(["resolve", "--env", str(env), "--flash-attn", given, "--json"]) == ExitCode.OK
    doc = json.loads(capsys.readouterr().out)
    assert doc["selected"]["flash_attn_version"].startswith(version)
    assert doc["options"]["flash_attn_spec"] == given


def test_install_and_download_read_flash_attn_the_same_way() -> None:
    from tests.support.envs import make_env
    from vox1_setup.commands.install import choose_wheel
    from vox1_setup.paths import default_paths

    entry, _ = choose_wheel(make_env(), manifest=None, spec="2.6.3", wheel=None, sha256=None, force=False,
                            paths=default_paths())
    assert entry.flash_attn_version == "2.6.3"
