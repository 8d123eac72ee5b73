"""One scrubber at every door: a secret printed by a runbook, passed as a parameter, typed
into the incident record or held by the target never reaches evidence, a record people
read, the report or the bundle."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import pytest
import yaml

from .conftest import NOTEBOOKS, Cli, sha256sum_check

pytestmark = pytest.mark.slow

# Every secret is built by concatenation (no secret-shaped literal in the repository) and
# carries a unique core: the bytes that must not survive anywhere.
PEM = (
    "-----BEGIN RSA "
    + "PRIVATE KEY-----\nMIIEpAIBAAKCAQEAq7PemCoreLine0001abcdefghijklmnopqrstuvwx\n"
    + "Zm9vYmFyYmF6cXV4cXV1eA==\n-----END RSA "
    + "PRIVATE KEY-----"
)
PEM_NO_END = (
    "-----BEGIN OPENSSH "
    + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAA"
    + "NoEndCore0002xyz\nAAAAB3NzaC1yc2EAAAADAQABAAABAQ"
)
PGP = (
    "-----BEGIN PGP "
    + "PRIVATE KEY BLOCK-----\nVersion: GnuPG v2\n\nlQOYBGPgpCore0003abcdefQ8Rz\n"
    + "=Ab12\n-----END PGP PRIVATE KEY BLOCK-----"
)
BASIC = base64.b64encode(b"kfm:BasicCore0007secret").decode()
SECRETS = {  # parameter -> (value, core)
    "pem": (PEM, "PemCoreLine0001"),
    "pem_noend": (PEM_NO_END, "NoEndCore0002"),
    "pgp": (PGP, "PgpCore0003"),
    "dsn": ("postgresql://kfm:" + "Dsn@Core0004@pw@db.internal:5432/kfm", "Core0004"),
    "env_line": ("PGPASSWORD=" + "EnvCore0005zz", "EnvCore0005"),
    "json_line": ('{"user": "kfm", "password": "' + 'JsonCore0006"}', "JsonCore0006"),
    "basic_header": ("Authorization: Basic " + BASIC, BASIC),
    "db_password": ("BareCore0008" + "pw", "BareCore0008"),
}
TARGET_CORE = "TargetCore0009"
TITLE_CORE = "TitleCore0010"
NOTE_CORE = "NoteCore0011"
CORES = [core for _, core in SECRETS.values()] + [TARGET_CORE, TITLE_CORE, NOTE_CORE]


def _leaks(blob: bytes) -> list[str]:
    return [core for core in CORES if core.encode() in blob]


def _leaks_in_tree(folder: Path) -> dict[str, list[str]]:
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (hit := _leaks(path.read_bytes())):
            found[path.relative_to(folder).as_posix()] = hit
    return found


def _secret_target(sandbox: Path) -> Path:
    """The sandbox's target with a free-text note that holds a password (a key named as a
    secret, `dsn:`, is refused at load: see tests/test_service.py)."""
    data = yaml.safe_load(sandbox.read_text())
    data["database"] = {"note": f"postgresql://kfm:{TARGET_CORE}@localhost:5432/kfm"}
    target = sandbox.parent / "with-dsn.target.yaml"
    target.write_text(yaml.safe_dump(data))
    return target


def test_no_secret_survives_any_door(cli: Cli, root: Path, sandbox: Path, tmp_path: Path) -> None:
    new = cli(
        "incident",
        "new",
        "--title",
        f"db login fails for postgres://ops:{TITLE_CORE}@db",
        "--severity",
        "Sev1",
    )
    assert new.exit_code == 0, new.output
    incident_id = new.stdout.strip()
    ws = root / incident_id
    note = cli("incident", "note", incident_id, "--hypothesis", f"PGPASSWORD={NOTE_CORE} leaked")
    assert note.exit_code == 0, note.output

    multi_line = {name: SECRETS[name][0] for name in ("pem", "pem_noend", "pgp")}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(multi_line))
    singles = [f"{n}={v}" for n, (v, _) in SECRETS.items() if n not in multi_line]
    run = cli(
        "run",
        str(NOTEBOOKS / "prints_secrets.ipynb"),
        "--incident",
        incident_id,
        "--target",
        str(_secret_target(sandbox)),
        "--apply",
        "-f",
        str(params),
        *[arg for pair in singles for arg in ("-p", pair)],
        "--json",
    )
    out = json.loads(run.stdout)
    # The last cell raises with the DSN in its message: the run is errored, not lost.
    assert out["outcome"] == "errored", out
    assert _leaks(run.stdout.encode()) == []
    for command in (
        ("update", incident_id),
        ("update", incident_id, "--audience", "public"),
        ("postmortem", incident_id),
        ("report", incident_id),
    ):
        done = cli(*command)
        assert done.exit_code == 0, (command, done.output)
    bundle = Path(cli("bundle", incident_id).stdout.strip())

    # Evidence still intact, and the secrets were there to be removed (markers remain).
    assert sha256sum_check(ws).returncode == 0
    assert cli("verify", incident_id).exit_code == 0
    sealed = (ws / out["notebook"]).read_text()
    for kind in ("private-key", "pgp-private-key", "url-credentials", "assigned-secret"):
        assert f"[REDACTED:{kind}]" in sealed, kind
    assert "[REDACTED:basic-auth]" in sealed and "[REDACTED:assigned-secret]" in sealed

    assert _leaks_in_tree(ws) == {}
    with tarfile.open(bundle) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    assert {name: _leaks(data) for name, data in members.items() if _leaks(data)} == {}


def test_bundle_carries_no_unsealed_working_copy(cli: Cli, incident: tuple[str, Path]) -> None:
    """`open` writes a parameterized working copy for JupyterLab (it must hold the real
    values for the kernel): it is not evidence and never travels in a bundle."""
    incident_id, ws = incident
    opened = cli(
        "open",
        str(NOTEBOOKS / "prints_secrets.ipynb"),
        "--incident",
        incident_id,
        "-p",
        f"env_line=PGPASSWORD={NOTE_CORE}",
        "--no-lab",
        "--json",
    )
    assert opened.exit_code == 0, opened.output
    assert list((ws / "sessions").glob("*.ipynb"))  # the working copy exists
    bundle = Path(cli("bundle", incident_id).stdout.strip())
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        data = b"".join(tar.extractfile(m).read() for m in tar.getmembers() if m.isfile())
    assert not [n for n in names if "/sessions" in n]
    assert _leaks(data) == []
    assert cli("verify", "--bundle", str(bundle)).exit_code == 0


def test_torn_partial_bytes_are_scrubbed_too(
    cli: Cli, incident: tuple[str, Path], sandbox: Path
) -> None:
    """A partial notebook torn by a kill is kept as raw bytes: scrubbed like the rest."""
    from kfm_runbooks import runbook as runbook_mod
    from kfm_runbooks._time import utc_now
    from kfm_runbooks.execute import target_info
    from kfm_runbooks.seal import RunbookRef, RunInputs, seal_run
    from kfm_runbooks.target import load_target
    from kfm_runbooks.workspace import open_workspace

    incident_id, ws = incident
    workspace = open_workspace(incident_id)
    book = runbook_mod.load(NOTEBOOKS / "prints_secrets.ipynb")
    partial = workspace.runs / ".RUN-torn.partial.ipynb"
    partial.write_bytes(b'{"cells": [{"outputs": ["' + SECRETS["env_line"][0].encode() + b"\n")
    target = load_target(sandbox)
    inputs = RunInputs(
        run_id="RUN-torn",
        runbook=RunbookRef.of(book),
        parameters={"incident_id": incident_id},
        target=target,
        target_info=target_info(target),
        actor="tester",
        started=utc_now(),
    )
    result = seal_run(
        workspace,
        inputs,
        book=book,
        partial=partial,
        status={"status": "kernel-died"},
        ended=utc_now(),
    )
    assert result.outcome == "kernel-died"
    torn = ws / "10_evidence/runs/RUN-torn.torn-partial.bin"
    assert torn.is_file() and b"[REDACTED:assigned-secret]" in torn.read_bytes()
    assert _leaks_in_tree(ws) == {}
