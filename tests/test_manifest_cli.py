"""`vox1-setup manifest build|validate|list` and tools/build_manifest.py."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.test_manifest import ROOT, catalog_path
from vox1_setup.cli import run_cli
from vox1_setup.errors import ExitCode
from vox1_setup.manifest import Manifest, default_manifest, dump_manifest


def test_build_command_is_reproducible(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.json"
    assert run_cli(["manifest", "build", "--from-tsv", str(catalog_path()), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == "vox1-manifest-build/1" and report["entries"] == len(default_manifest())
    assert report["derived"] > 0
    assert out.read_bytes() == (ROOT / "wheels.json").read_bytes()


def test_build_command_reports_a_missing_catalog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["manifest", "build", "--from-tsv", str(tmp_path / "none.tsv")]) == ExitCode.BAD_INPUT
    assert "cannot read catalog" in capsys.readouterr().err


def test_tools_script_checks_both_copies() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "build_manifest.py"), "--check",
                           "--tsv", str(catalog_path())], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_validate_bundled_and_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["manifest", "validate"]) == 0
    assert "valid (" in capsys.readouterr().out
    good = tmp_path / "good.json"
    good.write_bytes(dump_manifest(Manifest(entries=default_manifest().entries[:5])))
    assert run_cli(["manifest", "validate", str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"schema": "vox1-manifest-validation/1", "manifest": str(good), "valid": True, "problems": []}


def test_validate_lists_every_problem_and_exits_bad_input(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b = default_manifest().entries[:2]
    bad = Manifest(entries=(replace(a, url=a.url.replace("https", "http")), b, replace(b, torch_mm="9.9")))
    path = tmp_path / "bad.json"
    path.write_bytes(dump_manifest(bad))
    assert run_cli(["manifest", "validate", str(path)]) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert "entry 0" in captured.out and "[url]" in captured.out
    assert "entry 2" in captured.out and "[duplicate]" in captured.out and "[mismatch]" in captured.out
    assert "3 problem(s)" in captured.err
    assert run_cli(["manifest", "validate", str(path), "--json"]) == ExitCode.BAD_INPUT
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is False and len(doc["problems"]) == 3


def test_validate_an_unreadable_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"schema": "vox1-wheels/1"', encoding="utf-8")
    assert run_cli(["--json", "manifest", "validate", str(path)]) == ExitCode.BAD_INPUT
    doc = json.loads(capsys.readouterr().out)
    assert "not valid JSON" in doc["problems"][0]["message"]


@pytest.mark.parametrize(("args", "check"), [
    (["--torch", "2.9", "--py", "3.13", "--platform", "windows"],
     lambda e: e["torch_mm"] == "2.9" and e["abi_tag"] == "cp313" and e["platform_tags"] == ["win_amd64"]),
    (["--py", "3.13t"], lambda e: e["abi_tag"] == "cp313t"),
    (["--python-version", "cp310", "--cuda", "13"],
     lambda e: e["abi_tag"] == "cp310" and e["cuda"].startswith("13")),
    (["--cuda", "12.8", "--torch", "2.7.1+cu128", "--py", "3.11", "--platform", "linux_x86_64"],
     lambda e: e["cuda"] in ("12.8", "12") and all(p.endswith("x86_64") for p in e["platform_tags"])),
    (["--platform", "aarch64", "--source", "mjun0812"],
     lambda e: e["platform_tags"][0].endswith("aarch64") and e["source"] == "mjun0812"),
    (["--flash-attn", ">=2.8.3", "--source", "Dao-AILab"],
     lambda e: e["flash_attn_version"].startswith("2.8.3") and e["source"] == "Dao-AILab"),
    (["--flash-attn", "2.8.3", "--source", "Dao-AILab"], lambda e: e["flash_attn_version"] == "2.8.3"),
    (["--flash-attn", "2.7.*", "--py", "3.12"], lambda e: e["flash_attn_version"].startswith("2.7.")),
])
def test_list_filters(args: list[str], check: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["manifest", "list", *args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "vox1-wheel-list/1" and doc["count"] == len(doc["entries"]) > 0
    assert all(check(e) for e in doc["entries"])  # type: ignore[operator]


def test_list_human_output_and_bad_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["manifest", "list", "--torch", "2.9", "--py", "3.13", "--platform", "win_amd64"]) == 0
    captured = capsys.readouterr()
    assert "flash_attn-2.8.3+cu128torch2.9-cp313-cp313-win_amd64.whl" in captured.out
    assert "wheels" in captured.err
    assert run_cli(["manifest", "list", "--py", "three"]) == ExitCode.BAD_INPUT
    assert "--py 'three'" in capsys.readouterr().err
    assert run_cli(["manifest", "list", "--flash-attn", "newest"]) == ExitCode.BAD_INPUT


RERELEASED = "flash_attn-2.6.3+cu124torch2.6-cp312-cp312-linux_x86_64.whl"


def test_list_shows_the_release_tag_of_each_copy(capsys: pytest.CaptureFixture[str]) -> None:
    """mjun0812 re-releases the same file under newer tags: the release column tells the copies apart."""
    args = ["manifest", "list", "--torch", "2.6", "--py", "3.12", "--source", "mjun0812", "--flash-attn", "2.6.3",
            "--cuda", "12.4", "--platform", "linux_x86_64"]
    assert run_cli(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.endswith(" " + RERELEASED)]
    tags = {e.release for e in default_manifest().by_filename(RERELEASED)}
    assert len(lines) == len(tags) > 1
    assert len(set(lines)) == len(lines)
    assert {next(t for t in line.split() if t in tags) for line in lines} == tags
    assert run_cli([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {e["release"] for e in doc["entries"] if e["filename"] == RERELEASED} == tags


def test_list_takes_the_release_from_the_url_when_the_manifest_omits_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(dump_manifest(Manifest(entries=default_manifest().by_filename(RERELEASED))))
    for entry in doc["entries"]:
        del entry["release"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert run_cli(["manifest", "list", "--manifest", str(path), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["entries"]
    assert [e["release"] for e in listed] == [e["url"].split("/releases/download/")[1].split("/")[0]
                                              for e in listed]
    assert all(e["release"] for e in listed)
    assert run_cli(["manifest", "list", "--manifest", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(f" {e['release']} " in out for e in listed)


def test_list_python_is_the_version_filter_not_an_interpreter(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["manifest", "list", "--py", "3.12", "--json"]) == 0
    by_py = json.loads(capsys.readouterr().out)["entries"]
    assert run_cli(["manifest", "list", "--python-version", "3.12", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == by_py
    assert run_cli(["manifest", "list", "--python", "3.12"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert "--py" in err and "interpreter" in err and "manifest list --py 3.12" in err
    assert run_cli(["manifest", "list", "--help"]) == 0
    assert "--python-version, --py VERSION" in capsys.readouterr().out
