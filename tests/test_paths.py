"""Where things are, decided like git decides (paths.py), and `kfm-runbook where`."""

from __future__ import annotations

import json
import re
import shutil
import sys
import tomllib
from pathlib import Path

import pytest

from kfm_runbooks import paths, runbook

from .conftest import ROOT, Cli

TEMPLATE = ROOT / "runbooks" / "TEMPLATE_runbook.ipynb"


@pytest.fixture
def away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder outside any repository as cwd; no location variables set."""
    for name in ("KFM_INCIDENT_ROOT", "KFM_RUNBOOK_LIBRARY", "KFM_RUNBOOKS_DIR", "KFM_SANDBOX_DIR"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "empty"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _library(base: Path, *runbooks: tuple[str, str]) -> Path:
    """A runbook library with the TEMPLATE and copies of packaged runbooks under new ids."""
    library = base / "runbooks"
    library.mkdir(parents=True)
    shutil.copyfile(TEMPLATE, library / TEMPLATE.name)
    for source, new_id in runbooks:
        domain = new_id.split("-")[1]
        (library / domain).mkdir(exist_ok=True)
        text = runbook.find(source).read_text().replace(source, new_id)
        (library / domain / f"{new_id}.ipynb").write_text(text)
    return library


def _where(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("where", "--json", *args)
    assert result.exit_code == 0, result.output
    found: dict[str, object] = json.loads(result.stdout)
    return found


def test_library_precedence_option_env_nearest_packaged(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = str(paths.packaged_library())
    layers = _where(cli)["library"]
    assert [(x["path"], "packaged library" in x["reason"]) for x in layers] == [(packaged, True)]  # type: ignore[index, union-attr]

    team = _library(tmp_path / "team")
    (tmp_path / "team" / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "team" / "deep" / "er")
    top = _where(cli)["library"][0]  # type: ignore[index]
    assert top["path"] == str(team) and "nearest runbooks/" in top["reason"]

    env_lib = _library(tmp_path / "env")
    monkeypatch.setenv("KFM_RUNBOOK_LIBRARY", str(env_lib))
    top = _where(cli)["library"][0]  # type: ignore[index]
    assert top == {"path": str(env_lib), "reason": "$KFM_RUNBOOK_LIBRARY"}

    opt_lib = _library(tmp_path / "opt")
    result = cli("--library", str(opt_lib), "where", "--json")
    layers = json.loads(result.stdout)["library"]
    assert [x["path"] for x in layers] == [str(opt_lib), packaged]
    assert layers[0]["reason"] == "--library"


def test_deprecated_library_variable_still_works_and_says_so(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    legacy = _library(tmp_path / "legacy")
    monkeypatch.setenv("KFM_RUNBOOKS_DIR", str(legacy))
    top = _where(cli)["library"][0]  # type: ignore[index]
    assert top["path"] == str(legacy) and "deprecated: use $KFM_RUNBOOK_LIBRARY" in top["reason"]


def test_a_team_library_stacks_over_the_packaged_one(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = _library(tmp_path / "team", ("RBK-catalog-checksum-mismatch", "RBK-catalog-team-check"))
    monkeypatch.chdir(team.parent)
    listed = {row["id"]: row["path"] for row in json.loads(cli("list", "--json").stdout)}
    assert listed["RBK-catalog-team-check"] == str(team / "catalog/RBK-catalog-team-check.ipynb")
    assert (
        "RBK-catalog-checksum-mismatch" in listed
        and len(listed) == len(runbook.discover(paths.packaged_library())) + 1
    )
    assert cli("show", "RBK-catalog-team-check").exit_code == 0
    assert runbook.find("RBK-api-5xx-spike").is_relative_to(paths.packaged_library())


def test_an_id_defined_twice_is_an_error_naming_both_files(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    team = _library(tmp_path / "team")
    (team / "catalog").mkdir()
    mine = team / "catalog" / "RBK-catalog-checksum-mismatch.ipynb"
    shutil.copyfile(runbook.find("RBK-catalog-checksum-mismatch"), mine)
    packaged = paths.packaged_library() / "catalog" / "RBK-catalog-checksum-mismatch.ipynb"
    monkeypatch.chdir(team.parent)
    incident = cli("incident", "new", "--title", "Twice", "--severity", "Sev3")
    incident_id = incident.stdout.strip()
    for args in (
        ("list",),
        ("show", "RBK-api-5xx-spike"),
        ("run", "RBK-catalog-checksum-mismatch", "--incident", incident_id),
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        line = result.stderr.strip()
        assert "\n" not in line and "defined twice" in line
        assert str(mine) in line and str(packaged) in line


def test_a_missing_library_folder_is_bad_input(cli: Cli, away: Path, tmp_path: Path) -> None:
    result = cli("--library", str(tmp_path / "nope"), "list")
    assert result.exit_code == 2 and "is not a folder" in result.stderr


def test_incident_root_precedence(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _where(cli)["incident_root"] == {
        "path": str(away / "incident_cases"),
        "reason": f"none found above {away}: ./incident_cases",
    }
    (tmp_path / "repo" / "incident_cases").mkdir(parents=True)
    (tmp_path / "repo" / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "a" / "b")
    found = _where(cli)["incident_root"]
    assert found["path"] == str(tmp_path / "repo" / "incident_cases")  # type: ignore[index]
    result = cli("incident", "new", "--title", "Found above", "--severity", "Sev3")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "repo" / "incident_cases" / result.stdout.strip()).is_dir()
    monkeypatch.setenv("KFM_INCIDENT_ROOT", str(tmp_path / "env-root"))
    assert _where(cli)["incident_root"]["reason"] == "$KFM_INCIDENT_ROOT"  # type: ignore[index]
    assert _where(cli, "--root", str(tmp_path / "opt"))["incident_root"] == {
        "path": str(tmp_path / "opt"),
        "reason": "--root",
    }


@pytest.mark.parametrize("how", ["--root", "env", "cwd"])
def test_incident_root_is_never_inside_the_installation(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    venv = tmp_path / "venv"  # an installation outside any checkout, as pip/pipx make one
    (venv / "lib" / "python3.11").mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setattr(sys, "exec_prefix", str(venv))
    inside = venv / "incident_cases"
    args: list[str] = []
    if how == "--root":
        args = ["--root", str(inside)]
    elif how == "env":
        monkeypatch.setenv("KFM_INCIDENT_ROOT", str(inside))
    else:
        monkeypatch.chdir(venv / "lib" / "python3.11")
    result = cli("incident", "new", "--title", "Nope", "--severity", "Sev3", *args)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and "inside the kfm-runbooks installation" in line
    assert not inside.exists() and not (venv / "lib" / "python3.11" / "incident_cases").exists()
    assert _where(cli, *args)["incident_root"]["path"] is None  # type: ignore[index]


def test_default_sandbox_lives_in_the_project(
    cli: Cli, away: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _where(cli)["sandbox"]["path"] == str(away / ".kfm" / "sandbox")  # type: ignore[index]
    (tmp_path / "proj" / "incident_cases").mkdir(parents=True)
    (tmp_path / "proj" / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "sub")
    assert _where(cli)["sandbox"]["path"] == str(tmp_path / "proj" / ".kfm" / "sandbox")  # type: ignore[index]


def test_where_prints_every_location_with_its_reason(cli: Cli, away: Path) -> None:
    result = cli("where")
    assert result.exit_code == 0
    for name in ("installation", "library", "incident_root", "sandbox", "repository", "kernel"):
        assert re.search(rf"^{name}:", result.stdout, re.M), name
    assert "./incident_cases" in result.stdout


def test_kernel_install_prefix_pins_this_interpreter(cli: Cli, tmp_path: Path) -> None:
    result = cli("kernel", "install", "--prefix", str(tmp_path / "prefix"))
    assert result.exit_code == 0, result.output
    spec_file = tmp_path / "prefix/share/jupyter/kernels/kfm-runbook/kernel.json"
    spec = json.loads(spec_file.read_text())
    assert spec["argv"][:3] == [sys.executable, "-m", "kfm_runbooks.kernel_launcher"]
    assert spec["env"]["TZ"] == "UTC"


def test_kernel_install_user_goes_to_the_user_jupyter_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "user-data"))
    result = cli("kernel", "install", "--user")
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "user-data/kernels/kfm-runbook/kernel.json").read_text())
    assert spec["argv"][0] == sys.executable


def test_kernel_install_refuses_user_with_prefix(cli: Cli, tmp_path: Path) -> None:
    result = cli("kernel", "install", "--user", "--prefix", str(tmp_path))
    assert result.exit_code == 2 and "one of" in result.stderr


def test_only_paths_py_locates_the_checkout() -> None:
    """Nothing but paths.py computes the repository root from a module's location."""
    offenders = []
    locator = ROOT / "tools" / "kfm_runbooks" / "paths.py"
    for module in sorted((ROOT / "tools").rglob("*.py")):
        if module == locator or "egg-info" in str(module):
            continue
        text = module.read_text()
        if "__file__" in text or re.search(r"\.parents\[\d\]", text):
            offenders.append(str(module.relative_to(ROOT)))
    assert offenders == []


def test_every_package_ships_in_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT / "tools").parts)
        for init in (ROOT / "tools" / "kfm_runbooks").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
    mapped = config["package-dir"]
    for package, folder in mapped.items():
        if package:
            assert (ROOT / folder).is_dir() and package in listed


def test_pre_commit_hooks_manifest_is_valid_and_covers_the_standard() -> None:
    from pre_commit.clientlib import load_manifest

    hooks = {hook["id"]: hook for hook in load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))}
    assert set(hooks) == {"kfm-runbook-lint", "kfm-runbook-index", "kfm-runbook-golden-fresh"}
    assert hooks["kfm-runbook-lint"]["entry"] == "kfm-runbook lint"
