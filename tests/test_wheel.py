"""From a wheel, as an operator installs it: no checkout, an empty folder, the README's
commands. The sdist and wheel are built here (`python -m build`: the wheel is built from the
sdist, so the sdist is complete too), checked by twine, and the wheel is installed with the
pinned constraints into a fresh venv outside the repository (one venv for the module)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kfm_runbooks import ledger, runbook

from .conftest import ROOT
from .test_repo import TEAM_ID, add_golden_case, finish_runbook

pytestmark = pytest.mark.slow
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
CHECKSUM = "RBK-catalog-checksum-mismatch"


@dataclass
class Installed:
    venv: Path
    home: Path  # HOME and Jupyter folders of this user: nothing of the developer's leaks in
    dist: Path
    before_kernel: dict[str, subprocess.CompletedProcess[str]] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KFM_", "JUPYTER", "PYTHON", "VIRTUAL_ENV", "PYTEST"))
        }
        env.update(
            HOME=str(self.home),
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            JUPYTER_DATA_DIR=str(self.home / "jupyter-data"),
            JUPYTER_CONFIG_DIR=str(self.home / "jupyter-config"),
            JUPYTER_RUNTIME_DIR=str(self.home / "jupyter-runtime"),
            KFM_ACTOR="operator",
        )
        return env

    def kfm(self, *args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kfm-runbook", *map(str, args)],
            cwd=cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=900,
        )


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=1800
    )
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.is_relative_to(ROOT)
    dist = base / "dist"
    _run(sys.executable, "-m", "build", "--outdir", dist, ROOT)
    _run(sys.executable, "-m", "twine", "check", "--strict", *sorted(dist.iterdir()))
    (wheel,) = dist.glob("*.whl")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", venv)
    _run(
        venv / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # bytecode as modules are first imported: a quicker install
        "-c",
        ROOT / "requirements" / "constraints.txt",
        f"{wheel}[golden]",
    )
    home = base / "home"
    home.mkdir()
    found = Installed(venv, home, dist)
    empty = base / "empty-before-kernel"
    empty.mkdir()
    found.before_kernel["incident"] = found.kfm(
        "incident", "new", "--title", "Before the kernel", "--severity", "Sev3", cwd=empty
    )
    incident_id = found.before_kernel["incident"].stdout.strip()
    found.before_kernel["run"] = found.kfm("run", CHECKSUM, "--incident", incident_id, cwd=empty)
    found.before_kernel["open"] = found.kfm(
        "open", CHECKSUM, "--incident", incident_id, "--no-lab", cwd=empty
    )
    found.before_kernel["install"] = found.kfm("kernel", "install", "--sys-prefix", cwd=empty)
    yield found
    shutil.rmtree(venv, ignore_errors=True)  # ~0.5 GB: not left for the next session's cleanup


def test_sdist_and_wheel_carry_the_library(installed: Installed) -> None:
    names = sorted(p.name for p in installed.dist.iterdir())
    assert names == [f"kfm_runbooks-{VERSION}-py3-none-any.whl", f"kfm_runbooks-{VERSION}.tar.gz"]
    site = next((installed.venv / "lib").glob("python3*/site-packages/kfm_runbooks"))
    shipped = sorted(p.stem for p in (site / "_data" / "runbooks").glob("*/RBK-*.ipynb"))
    assert shipped == sorted(p.stem for p in runbook.discover(ROOT / "runbooks"))
    for rel in ("_data/runbooks/TEMPLATE_runbook.ipynb", "_data/kernels/kfm-runbook/kernel.json",
                "_data/golden/sanitize.cfg", "schemas/incident.schema.json"):  # fmt: skip
        assert (site / rel).is_file(), rel


def test_run_and_open_name_the_command_that_installs_the_missing_kernel(
    installed: Installed,
) -> None:
    assert installed.before_kernel["incident"].returncode == 0
    for name in ("run", "open"):
        done = installed.before_kernel[name]
        assert done.returncode == 5, (name, done.stderr)
        assert done.stderr.strip() == (
            "error: kernel 'kfm-runbook' is not installed: "
            "run `kfm-runbook kernel install --sys-prefix`"
        ), name
    install = installed.before_kernel["install"]
    assert install.returncode == 0, install.stderr
    spec_dir = installed.venv / "share" / "jupyter" / "kernels" / "kfm-runbook"
    assert str(spec_dir) in install.stdout
    spec = json.loads((spec_dir / "kernel.json").read_text())
    assert spec["argv"][:3] == [str(installed.venv / "bin" / "python"), "-m",
                                "kfm_runbooks.kernel_launcher"]  # fmt: skip


def test_where_from_an_empty_folder(installed: Installed, tmp_path: Path) -> None:
    done = installed.kfm("where", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    where = json.loads(done.stdout)
    (library,) = where["library"]
    assert Path(library["path"]).is_relative_to(installed.venv)
    assert "installed package" in library["reason"]
    assert where["incident_root"]["path"] == str(tmp_path / "incident_cases")
    assert where["sandbox"]["path"] == str(tmp_path / ".kfm" / "sandbox")
    assert (
        where["repository"]["path"] is None and "kfm-runbook init" in where["repository"]["reason"]
    )
    assert where["kernel"]["path"] == str(installed.venv / "share/jupyter/kernels/kfm-runbook")
    assert f"kfm-runbooks {VERSION}" in where["installation"]["reason"]
    assert installed.kfm("--version", cwd=tmp_path).stdout.strip() == (
        f"kfm-runbook, version {VERSION}"
    )
    listed = json.loads(installed.kfm("list", "--json", cwd=tmp_path).stdout)
    assert len(listed) == len(runbook.discover(ROOT / "runbooks"))


def test_incident_root_is_never_under_the_venv(installed: Installed, tmp_path: Path) -> None:
    inside = next((installed.venv / "lib").glob("python3*/site-packages"))
    for cwd, extra in ((installed.venv, []), (inside, []), (tmp_path, ["--root", inside / "x"])):
        done = installed.kfm(
            "incident", "new", "--title", "t", "--severity", "Sev3", *extra, cwd=cwd
        )
        assert done.returncode == 2, (cwd, done.stdout, done.stderr)
        assert "inside the kfm-runbooks installation" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not list(installed.venv.rglob("INC-*"))
    assert not (installed.venv / "incident_cases").exists()


# The sandbox's admin shim names the interpreter that built it (like any installed console
# script): the one file that differs between a wheel's and a checkout's sandbox.
SHIM = Path("live") / "bin" / "kfm-sandbox-admin"


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.relative_to(folder) != SHIM
    }


def test_an_operator_and_a_team_from_an_empty_folder(installed: Installed, tmp_path: Path) -> None:
    """The README's path: kernel (fixture), init, new, lint, sandbox, incident, run of a
    packaged runbook and of the team's own, verify, report; goldens in the team's repo."""
    kfm = installed.kfm
    assert kfm("init", "team", cwd=tmp_path).returncode == 0
    team = tmp_path / "team"
    new = kfm("new", "catalog", "team-check", "--title", "Team check", cwd=team)
    assert new.returncode == 0, new.stderr
    assert new.stdout.strip() == str(team / "runbooks" / "catalog" / f"{TEAM_ID}.ipynb")
    finish_runbook(team / "runbooks" / "catalog" / f"{TEAM_ID}.ipynb")
    assert kfm("lint", cwd=team).returncode == 0
    assert kfm("index", cwd=team).returncode == 0
    assert kfm("index", "--check", cwd=team).returncode == 0

    sandbox = kfm("sandbox", "create", "sandbox", cwd=tmp_path)
    assert sandbox.returncode == 0, sandbox.stderr
    from kfm_runbooks.sandbox import create_sandbox

    create_sandbox(tmp_path / "from-checkout")
    assert _tree_digest(tmp_path / "sandbox") == _tree_digest(tmp_path / "from-checkout")

    opened = kfm("incident", "new", "--title", "From a wheel", "--severity", "Sev2", cwd=team)
    assert opened.returncode == 0, opened.stderr
    incident_id = opened.stdout.strip()
    workspace = team / "incident_cases" / incident_id
    assert workspace.is_dir()

    packaged = kfm("run", CHECKSUM, "--incident", incident_id, "--target",
                   tmp_path / "sandbox" / "target.yaml", "--json", cwd=team)  # fmt: skip
    assert packaged.returncode == 1, packaged.stderr  # the seeded faults are found
    assert json.loads(packaged.stdout)["outcome"] == "failed"
    own = kfm("run", TEAM_ID, "--incident", incident_id, "--target",
              team / "targets" / "example.target.yaml", "--json", cwd=team)  # fmt: skip
    assert own.returncode == 0, own.stdout + own.stderr
    assert json.loads(own.stdout)["outcome"] == "passed"

    runs = [
        e["data"]
        for e in ledger.check(workspace / "10_evidence" / "ledger.jsonl").entries
        if e["kind"] == "run"
    ]
    assert [r["runbook"]["id"] for r in runs] == [CHECKSUM, TEAM_ID]
    assert Path(runs[0]["runbook"]["path"]).is_relative_to(installed.venv)
    assert Path(runs[1]["runbook"]["path"]).is_relative_to(team)
    assert {r["tool_version"] for r in runs} == {VERSION}

    verify = kfm("verify", incident_id, cwd=team)
    assert verify.returncode == 0, verify.stdout
    report = kfm("report", incident_id, cwd=team)
    assert report.returncode == 0, report.stderr
    page = Path(report.stdout.strip())
    assert page.is_relative_to(workspace / "90_postmortem") and TEAM_ID in page.read_text()
    assert kfm("verify", incident_id, cwd=team).returncode == 0

    add_golden_case(team)
    made = kfm("golden", TEAM_ID, cwd=team)
    assert made.returncode == 0, made.stderr
    assert kfm("golden", "--check", cwd=team).returncode == 0
    replay = kfm("golden", "--replay", cwd=team)
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_two_libraries_defining_one_id_is_a_clear_error(
    installed: Installed, tmp_path: Path
) -> None:
    assert installed.kfm("init", "team", "--no-git", cwd=tmp_path).returncode == 0
    mine = tmp_path / "team" / "runbooks" / "catalog" / f"{CHECKSUM}.ipynb"
    mine.write_bytes(runbook.find(CHECKSUM).read_bytes())
    done = installed.kfm("list", cwd=tmp_path / "team")
    assert done.returncode == 2
    line = done.stderr.strip()
    assert line.startswith(f"error: runbook {CHECKSUM} is defined twice: {mine} and ")
    assert str(installed.venv) in line and len(line.splitlines()) == 1
