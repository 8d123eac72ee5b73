"""Secret-exposure checks: KFM's codes, no value ever kept, redaction that really reverses.

Every credential-shaped value used here is assembled at run time (the sandbox's fake
credentials, or `_fake()` below), so this file holds no secret-shaped literal.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kfm_runbooks.checks.security import leaks as secrets
from kfm_runbooks.checks.security.base import MAX_FILE_BYTES
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.sandbox.parts.security_secrets import fake_credentials
from kfm_runbooks.target import load_target

from . import hostile
from .conftest import KFM_SAMPLE

KFM_TARGET = "security_secret_exposure.target.yaml"
QUERY = (
    "fixtures/contracts/v1/source/occurrence_retrieval_snapshot/query_safety/"
    "semantic_invalid/semantic_invalid_secret_value.json"
)
WEBHOOK = (
    "fixtures/contracts/v1/source/webhook_ingress_decision/invalid/"
    "semantic_invalid_secret_persistence.json"
)


def _fake(n: int = 24) -> str:
    return "kfmTest" + "NotReal" + "x" * n


def _config(target: Path) -> secrets.SecretsConfig:
    return secrets.SecretsConfig.from_target(load_target(target))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_importing_the_security_checks_stays_light() -> None:
    code = (
        "import sys\n"
        "import kfm_runbooks.checks.security.leaks, kfm_runbooks.checks.security.supply\n"
        "import kfm_runbooks.checks.security.access, kfm_runbooks.checks.security.layers\n"
        "import kfm_runbooks.checks.security.wheels\n"
        "heavy = [m for m in ('scrapbook', 'papermill', 'pandas', 'pydantic', 'nbformat', "
        "'jupyter_client', 'jsonschema') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_kfm_source_fixtures_reproduce_kfm_codes() -> None:
    """KFM's expected codes (upstream expected_findings_manifest.json files at commit
    5635f15c of bartytime4life/Kansas-Frontier-Matrix, not part of the copied sample):
    semantic_invalid_secret_value.json -> OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED,
    semantic_invalid_secret_persistence.json -> SECRET_PERSISTENCE_DENIED; the valid
    fixtures in scope are negative controls."""
    scan = secrets.scan(_config(KFM_SAMPLE / KFM_TARGET))
    by_file = {f: sorted({e.code for e in items}) for f, items in scan.by_file().items()}
    assert by_file == {
        QUERY: ["OCCURRENCE_RETRIEVAL_QUERY_SECRET_VALUE_DENIED"],
        WEBHOOK: ["SECRET_PERSISTENCE_DENIED"],
    }
    assert scan.files_scanned == 6 and scan.unscanned == []
    [query] = scan.by_file()[QUERY]
    assert query.pointer == "/query_snapshot/predicates/4/value" and query.line == 56
    [webhook] = scan.by_file()[WEBHOOK]
    assert webhook.pointer == "/verification/raw_secret_persisted"
    assert webhook.credential_ref == "kms://provider-demo/webhook-key-v2"
    assert not webhook.redactable
    # The verdict is KFM's "invalid": blocking findings, nothing passes.
    assert {f.severity for f in scan.findings} == {"blocking"}


def test_sandbox_exposures_carry_no_value(tmp_path: Path) -> None:
    scan = secrets.scan(_config(create_sandbox(tmp_path / "sbx")))
    kinds = sorted(e.kind for e in scan.exposures)
    assert kinds == ["aws-access-key-id", "aws-secret-access-key", "bearer-token"]
    text = json.dumps([e.as_dict() for e in scan.exposures]) + repr(scan.findings)
    creds = fake_credentials()
    for kind, value in creds.items():
        assert value not in text
        [exposure] = [e for e in scan.exposures if e.kind == kind]
        assert exposure.fingerprint == secrets.fingerprint(value)
    clean = secrets.scan(_config(create_sandbox(tmp_path / "clean", clean=True)))
    assert clean.exposures == [] and clean.files_scanned == 3


def test_quarantine_redacts_then_restores_identical_bytes(tmp_path: Path) -> None:
    target = create_sandbox(tmp_path / "sbx")
    config = _config(target)
    before = _files(config.base / "security/secrets/ingest-service")
    scan = secrets.scan(config)
    for file, items in scan.by_file().items():
        result = secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)
        assert result["mode"] == "redacted" and not result["already"]
        again = secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)
        assert again["already"]
    after = secrets.scan(config)
    assert after.exposures == []
    body = (config.base / "security/secrets/ingest-service/settings.env").read_text()
    assert "[REDACTED:aws-secret-access-key:fp:" in body
    for value in fake_credentials().values():
        assert value not in body
    assert stat.S_IMODE(config.quarantine.stat().st_mode) == 0o700
    for original in config.quarantine.glob("*/original"):
        assert stat.S_IMODE(original.stat().st_mode) == 0o600
    for file in scan.by_file():
        assert secrets.restore_file(config, file)["restored"]
        assert not secrets.restore_file(config, file)["restored"]
    assert _files(config.base / "security/secrets/ingest-service") == before


def test_quarantine_refuses_a_file_changed_since(tmp_path: Path) -> None:
    config = _config(create_sandbox(tmp_path / "sbx"))
    file = "security/secrets/ingest-service/settings.env"
    items = secrets.scan(config).by_file()[file]
    secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)
    (config.base / file).write_text("changed by hand\n")
    assert secrets.restore_file(config, file) == {
        "path": file,
        "restored": False,
        "reason": "file changed since quarantine",
    }
    with pytest.raises(ValueError, match="has changed since"):
        secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)


def test_kfm_records_are_redacted_or_withdrawn(tmp_path: Path) -> None:
    shutil.copytree(KFM_SAMPLE, tmp_path / "kfm")
    config = _config(tmp_path / "kfm" / KFM_TARGET)
    scan = secrets.scan(config)
    for file, items in scan.by_file().items():
        secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)
    assert not (config.base / WEBHOOK).exists()  # a declaration cannot be cut out: withdrawn
    redacted = json.loads((config.base / QUERY).read_text())
    value = redacted["query_snapshot"]["predicates"][4]["value"]
    assert value.startswith("[REDACTED:secret-marker:fp:")
    after = secrets.scan(config)
    assert after.exposures == [] and after.unscanned == []  # the withdrawn file is accounted for
    assert secrets.restore_file(config, WEBHOOK)["mode"] == "withdrawn"
    assert (config.base / WEBHOOK).read_bytes() == (KFM_SAMPLE / WEBHOOK).read_bytes()


def test_rotation_checklist_is_idempotent_and_undoable(tmp_path: Path) -> None:
    config = _config(create_sandbox(tmp_path / "sbx"))
    scan = secrets.scan(config)
    first = secrets.record_rotation(config, scan.exposures, "INC-20260601-001")
    assert len(first["added"]) == 3
    assert secrets.record_rotation(config, scan.exposures, "INC-20260601-001")["added"] == []
    doc = yaml.safe_load(config.rotation.read_text())
    assert sorted(e["kind"] for e in doc["rotate"]) == [
        "aws-access-key-id",
        "aws-secret-access-key",
        "bearer-token",
    ]
    assert all(e["procedure"] for e in doc["rotate"])
    for value in fake_credentials().values():
        assert value not in config.rotation.read_text()
    assert secrets.remove_rotation(config, first["added"]) == {"removed": 3}
    assert not config.rotation.exists()


@pytest.mark.parametrize(
    ("name", "text", "kinds"),
    [
        ("app.yaml", "db:\n  password: {v}\n  password_ref: vault://kfm/db\n", ["assigned-secret"]),
        ("app.json", '{{"client_secret": "{v}", "token_count": 12345678}}', ["assigned-secret"]),
        (".env", "DB_PASSWORD={v}\nAPI_TOKEN=${{API_TOKEN}}\n", ["assigned-secret"]),
        ("app.ini", "webhook_secret = '{v}'\n", ["assigned-secret"]),
        # free text: only the project's patterns apply (redact.py), which know `name: value`
        ("notes.txt", "password: {v}\n", ["assigned-secret"]),
        ("notes.txt", "the password: is rotated monthly\n", []),  # prose, not a value
        ("app.yaml", "api_key: '{m}'\n", []),  # an earlier redaction is not a secret
        ("flags.json", '{{"credentials_embedded": false, "raw_secret_persisted": false}}', []),
        ("flags.json", '{{"a": {{"raw_secret_persisted": true}}}}', ["persisted-secret"]),
    ],
)
def test_structured_rules(tmp_path: Path, name: str, text: str, kinds: list[str]) -> None:
    folder = tmp_path / "scan"
    folder.mkdir()
    value = _fake()
    marker = secrets.MARKER_PREFIX + "assigned-secret:fp:00000000]"
    (folder / name).write_text(text.format(v=value, m=marker))
    config = secrets.SecretsConfig(tmp_path, (folder,), tmp_path / "q", tmp_path / "r.yaml")
    scan = secrets.scan(config)
    assert [e.kind for e in scan.exposures] == kinds
    assert value not in repr(scan.exposures)
    if kinds == ["assigned-secret"]:
        redacted, count = secrets.redacted_text(folder / name, (folder / name).read_bytes())
        assert count == 1 and redacted is not None and value not in redacted


def test_hostile_inputs_become_findings(tmp_path: Path) -> None:
    base = tmp_path / "target"
    folder = base / "scan"
    folder.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("AWS_SECRET_ACCESS_KEY=" + "A" * 40 + "\n")
    (folder / "link.txt").symlink_to(outside)
    os.mkfifo(folder / "pipe")  # opening it would block: it must never be opened
    (folder / "blob.bin").write_bytes(b"\x00\x01binary")
    (folder / "broken.json").write_text('{"password": "' + _fake() + '", "password": 1')
    (folder / "dup.json").write_text('{"a": 1, "a": 2}')
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(12)
    )
    (folder / "bomb.yaml").write_text(bomb)  # 9 * 8**12 leaves if aliases were expanded
    config = secrets.SecretsConfig(
        base, (folder, tmp_path / "outside.txt", base / "gone"), base / "q", base / "r.yaml"
    )
    scan = secrets.scan(config)
    codes = sorted((f.code, f.subject) for f in scan.unscanned)
    assert codes == [
        ("SEC_FILE_NOT_FOUND", "gone"),
        ("SEC_FILE_NOT_REGULAR", "scan/pipe"),
        ("SEC_INPUT_SYMLINK_DENIED", "scan/link.txt"),
        ("SEC_SCAN_BINARY_SKIPPED", "scan/blob.bin"),
        ("SEC_SCAN_PATH_ESCAPE", "outside.txt"),
    ]
    assert all(f.severity == "hold" for f in scan.unscanned)
    # broken JSON: scanned as text, no crash; the password is still found in the text
    assert [(e.file, e.kind) for e in scan.exposures] == [("scan/broken.json", "assigned-secret")]


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_restore_refuses_a_held_original_swapped_for_a_link_fifo_or_giant(
    tmp_path: Path, kind: str
) -> None:
    config = _config(create_sandbox(tmp_path / "sbx"))
    file = "security/secrets/ingest-service/settings.env"
    items = secrets.scan(config).by_file()[file]
    secrets.quarantine_file(config, file, incident="INC-20260601-001", exposures=items)
    redacted = (config.base / file).read_bytes()
    original = next(config.quarantine.glob("*/original"))
    hostile.plant(original, kind, b"SECRET=swapped-in\n", MAX_FILE_BYTES)
    with pytest.raises(ValueError, match="cannot be read"):
        secrets.restore_file(config, file)
    assert (config.base / file).read_bytes() == redacted  # nothing written through it
