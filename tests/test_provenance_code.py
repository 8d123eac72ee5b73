"""Code provenance: a run names the code its kernel imported; `verify --code` says which run
ran code that differs from what is installed now."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import shutil
from pathlib import Path
from typing import Any

import pytest
from prov.model import ProvDocument

from kfm_runbooks import codeprov, ledger

from .conftest import Cli
from .helpers import rewrite_ledger

pytestmark = pytest.mark.slow


def _run_entry(ws: Path) -> dict[str, Any]:
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    return next(e for e in reversed(entries) if e["kind"] == "run")


def _checks_module(modules: dict[str, str]) -> str:
    """A checks module the run really imported (paths are taken from the run, not assumed)."""
    return next(m for m in sorted(modules) if m.startswith("checks/") and "catalog" in m)


def test_a_run_records_the_code_its_kernel_imported(sealed: tuple[str, Path]) -> None:
    _, ws = sealed
    code = _run_entry(ws)["data"]["code"]
    assert code["package"] == "kfm-runbooks"
    assert code["version"] == importlib.metadata.version("kfm-runbooks")
    assert code["python"] == f"{platform.python_implementation()} {platform.python_version()}"
    environment = codeprov.distributions_text()
    assert code["distributions_sha256"] == hashlib.sha256(environment.encode()).hexdigest()
    assert code["distributions"] == environment.count("\n") > 10
    modules = code["modules"]
    root = codeprov.package_root()
    for rel, digest in modules.items():  # each digest is the bytes of the installed file
        assert hashlib.sha256((root / rel).read_bytes()).hexdigest() == digest, rel
    assert "record.py" in modules and _checks_module(modules)
    # only what the kernel imported: a catalog runbook never imports another domain's checks,
    # the sandbox builder or the CLI
    installed = {p.relative_to(root).as_posix() for p in root.rglob("*.py")}
    never = {m for m in installed if m.startswith(("checks/graph", "checks/ui", "sandbox/"))}
    assert never and not never & set(modules)
    assert "cli.py" in installed and "cli.py" not in modules
    # the ledger saw it from the kernel, as a `code` entry of this run
    entries = ledger.check(ws / "10_evidence/ledger.jsonl").entries
    run_id = _run_entry(ws)["data"]["run_id"]
    kernel = [e for e in entries if e["kind"] == "code" and e["data"]["run_id"] == run_id]
    assert kernel and kernel[-1]["data"]["modules"] == modules


def test_the_prov_document_uses_the_code(sealed: tuple[str, Path]) -> None:
    _, ws = sealed
    code = _run_entry(ws)["data"]["code"]
    path = next((ws / "10_evidence/runs").glob("*.prov.json"))
    doc = ProvDocument.deserialize(content=path.read_text(), format="json")
    used = {
        str(r.get_attribute("prov:entity").pop())
        for r in doc.get_records()
        if r.is_relation() and type(r).__name__ == "ProvUsage"
    }
    entities = {str(e.identifier): e for e in doc.get_records() if type(e).__name__ == "ProvEntity"}

    def attr(entity: Any, name: str) -> str:
        return str(next(iter(entity.get_attribute(name)), ""))

    modules = {
        attr(e, "prov:label"): attr(e, "kfm:sha256")
        for ident, e in entities.items()
        if ident in used and attr(e, "prov:type") == "kfm:Module"
    }
    assert modules == code["modules"]
    package = [
        e for i, e in entities.items() if i in used and "SoftwarePackage" in attr(e, "prov:type")
    ]
    assert len(package) == 1 and attr(package[0], "kfm:version") == code["version"]
    environment = [
        e for i, e in entities.items() if i in used and "Environment" in attr(e, "prov:type")
    ]
    assert attr(environment[0], "kfm:sha256") == code["distributions_sha256"]


def test_the_environment_text_is_every_distribution_once_sorted() -> None:
    reference = {
        f"{dist.metadata['Name'].replace('_', '-').replace('.', '-').lower()}=={dist.version}"
        for dist in importlib.metadata.distributions()
        if dist.metadata["Name"]
    }
    text = codeprov.distributions_text()
    assert text == "".join(f"{line}\n" for line in sorted(reference))
    assert f"kfm-runbooks=={importlib.metadata.version('kfm-runbooks')}\n" in text


def test_the_version_comes_from_the_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    import kfm_runbooks

    real = importlib.metadata.version

    def version(name: str) -> str:
        return "9.8.7" if name == "kfm-runbooks" else real(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert codeprov.collect({})["version"] == "9.8.7"
    assert kfm_runbooks.__version__ == "9.8.7"  # the sealing tool's version: the same source


def test_verify_code_names_the_run_and_the_module_that_changed(
    cli: Cli, sealed: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident_id, ws = sealed
    data = _run_entry(ws)["data"]
    same = cli("verify", incident_id, "--code")
    assert same.exit_code == 0, same.output
    assert f"{data['run_id']} {data['runbook']['id']}: same code as installed" in same.stdout

    copy = tmp_path / "installed" / "kfm_runbooks"  # the repo's package is never edited
    shutil.copytree(codeprov.package_root(), copy, ignore=shutil.ignore_patterns("__pycache__"))
    changed = _checks_module(data["code"]["modules"])
    source = bytearray((copy / changed).read_bytes())
    source[-2] ^= 0x01
    (copy / changed).write_bytes(bytes(source))
    monkeypatch.setattr(codeprov, "package_root", lambda: copy)

    result = cli("verify", incident_id, "--code")
    assert result.exit_code == 0, result.output  # information, not a failure
    assert f"≠ {data['run_id']} {data['runbook']['id']}: ran other code" in result.stdout
    assert f"{changed}: ran {data['code']['modules'][changed][:16]}…" in result.stdout
    report = json.loads(cli("verify", incident_id, "--code", "--json").stdout)
    assert report["ok"] is True
    [run] = report["code"]["runs"]
    assert run["run_id"] == data["run_id"] and run["differs"] is True
    assert [c["module"] for c in run["changed"]] == [changed]
    assert run["changed"][0]["installed"] == hashlib.sha256(source).hexdigest()

    (copy / changed).unlink()
    gone = json.loads(cli("verify", incident_id, "--code", "--json").stdout)
    assert gone["code"]["runs"][0]["changed"] == [
        {"module": changed, "recorded": data["code"]["modules"][changed], "installed": None}
    ]


def test_verify_code_says_when_a_run_recorded_no_code(cli: Cli, sealed: tuple[str, Path]) -> None:
    """A run sealed before code provenance existed (or whose kernel never started a recorder)."""
    incident_id, ws = sealed
    assert "code" not in json.loads(cli("verify", incident_id, "--json").stdout)
    run_id = _run_entry(ws)["data"]["run_id"]

    def older(entry: dict[str, Any]) -> None:
        entry["data"].pop("code", None)

    rewrite_ledger(ws, older)
    result = cli("verify", incident_id, "--code")
    assert result.exit_code == 0, result.output
    assert f"? {run_id} " in result.stdout and "no code provenance recorded" in result.stdout
    [run] = json.loads(cli("verify", incident_id, "--code", "--json").stdout)["code"]["runs"]
    assert run["recorded"] is False and run["differs"] is False


def test_changed_modules_never_hashes_outside_the_package(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("x")
    digest = hashlib.sha256(b"x").hexdigest()
    package = tmp_path / "pkg"
    package.mkdir()
    assert codeprov.changed_modules({"../secret.txt": digest}, package) == [
        {"module": "../secret.txt", "recorded": digest, "installed": None}
    ]
