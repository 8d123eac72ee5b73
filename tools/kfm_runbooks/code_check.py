"""`verify --code`: which run used code that differs from what is installed now.

Information, never a failure: code changes between runs (a fix, an upgrade), and the
ledger keeps what each run ran. For each sealed run this compares the code provenance its
kernel recorded (codeprov.py) with the package installed here: every recorded module's
bytes are hashed again; the version and the installed-distribution digest are compared too.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import codeprov
from .history import History
from .workspace import open_workspace


@dataclass
class RunCode:
    run_id: str
    runbook: str
    recorded: bool  # False: the run's kernel recorded no code provenance
    version: str | None = None
    python: str | None = None
    modules: int = 0
    changed: list[dict[str, str | None]] = field(default_factory=list)
    version_differs: bool = False
    environment_differs: bool = False

    @property
    def differs(self) -> bool:
        return bool(self.changed) or self.version_differs

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "differs": self.differs}


@dataclass
class CodeReport:
    installed_version: str
    package_root: str
    runs: list[RunCode]

    def as_dict(self) -> dict[str, Any]:
        return {
            "installed_version": self.installed_version,
            "package_root": self.package_root,
            "runs": [run.as_dict() for run in self.runs],
        }


def code_report(
    incident_id: str, root: str | Path | None = None, package: Path | None = None
) -> CodeReport:
    """Compare each run's recorded code with the package under `package` (default: the
    `kfm_runbooks` this process imports)."""
    workspace = open_workspace(incident_id, root)
    history = History.read(workspace)
    base = package or codeprov.package_root()
    version = codeprov.package_version()
    environment = hashlib.sha256(codeprov.distributions_text().encode()).hexdigest()
    runs = []
    for entry in history.runs:
        data = entry["data"]
        run = RunCode(
            run_id=str(data.get("run_id")),
            runbook=str((data.get("runbook") or {}).get("id")),
            recorded=isinstance(data.get("code"), dict),
        )
        code = data.get("code")
        if isinstance(code, dict):
            found = code.get("modules")
            modules: dict[str, Any] = found if isinstance(found, dict) else {}
            run.version = str(code.get("version"))
            run.python = str(code.get("python"))
            run.modules = len(modules)
            run.changed = codeprov.changed_modules(modules, base)
            run.version_differs = run.version != version
            run.environment_differs = code.get("distributions_sha256") != environment
        runs.append(run)
    return CodeReport(version, str(base), runs)


def lines(report: CodeReport) -> list[str]:
    """The human text of `verify --code`: one line per run, then each changed module."""
    out = [f"code installed now: kfm-runbooks {report.installed_version} ({report.package_root})"]
    for run in report.runs:
        head = f"{run.run_id} {run.runbook}"
        if not run.recorded:
            out.append(f"   ? {head}: no code provenance recorded (older run, or no recorder)")
            continue
        what = f"kfm-runbooks {run.version}, {run.python}, {run.modules} modules"
        if not run.differs:
            env = "; kernel environment differs from this one" if run.environment_differs else ""
            out.append(f"   = {head}: same code as installed ({what}){env}")
            continue
        out.append(f"   ≠ {head}: ran other code than installed now ({what})")
        if run.version_differs:
            out.append(f"       version {run.version}, installed {report.installed_version}")
        for item in run.changed:
            now = item["installed"]
            state = f"now {now[:16]}…" if now else "now missing"
            out.append(f"       {item['module']}: ran {str(item['recorded'])[:16]}…, {state}")
    return out
