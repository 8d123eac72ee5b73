"""Signed ledger entries, in-toto attestations and the consistent-rewrite attack.

Keys are made here with the real `ssh-keygen -t ed25519`; signatures are made and checked
by the real `ssh-keygen -Y` (the only SSHSIG implementation used, both ways).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kfm_runbooks import ledger

from .conftest import CHECKSUM, KFM_BIN, Cli

pytestmark = pytest.mark.slow


def _keygen(folder: Path, name: str, passphrase: str = "") -> Path:
    key = folder / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", name, "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return key


def _signers(path: Path, *pairs: tuple[str, Path]) -> Path:
    lines = [f"{who} {(key.with_suffix('.pub')).read_text().strip()}" for who, key in pairs]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    alice, bob = _keygen(folder, "alice"), _keygen(folder, "bob")
    return {
        "alice": alice,
        "bob": bob,
        "locked": _keygen(folder, "locked", "a passphrase"),
        "alice_signers": _signers(folder / "alice_signers", ("alice@example.org", alice)),
        "bob_signers": _signers(folder / "bob_signers", ("bob@example.org", bob)),
    }


@pytest.fixture(scope="module")
def signed_template(
    tmp_path_factory: pytest.TempPathFactory, keys: dict[str, Path]
) -> Iterator[tuple[str, Path]]:
    """One real signed checksum run (CLI process: worker and kernel inherit the key)."""
    base = tmp_path_factory.mktemp("signed")
    env = {
        **__import__("os").environ,
        "KFM_INCIDENT_ROOT": str(base / "incidents"),
        "KFM_ACTOR": "tester",
    }
    env.pop("KFM_SIGNING_KEY", None)
    from kfm_runbooks.sandbox import create_sandbox

    target = create_sandbox(base / "sandbox")

    def kfm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KFM_BIN), *args], capture_output=True, text=True, env=env, timeout=600
        )

    made = kfm(
        "incident", "new", "--title", "Signed", "--severity", "Sev2",
        "--sign-key", str(keys["alice"]),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    incident_id = made.stdout.strip()
    run = kfm(
        "run", CHECKSUM, "--incident", incident_id, "--target", str(target), "--apply",
        "--sign-key", str(keys["alice"]),
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "attestation: 10_evidence/runs/" in run.stdout
    yield incident_id, base / "incidents" / incident_id


@pytest.fixture
def signed(signed_template: tuple[str, Path], root: Path) -> tuple[str, Path]:
    incident_id, source = signed_template
    dest = root / incident_id
    shutil.copytree(source, dest)
    return incident_id, dest


def _lines(ws: Path) -> list[str]:
    return (ws / "10_evidence/ledger.jsonl").read_text().splitlines()


def _entries(ws: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in _lines(ws)]


def _write(ws: Path, entries: list[dict[str, object]]) -> None:
    text = b"".join(ledger.entry_bytes(e) + b"\n" for e in entries)
    (ws / "10_evidence/ledger.jsonl").write_bytes(text)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def consistent_rewrite(ws: Path, strip_signatures: bool) -> None:
    """What someone with write access and no key can do: edit the sealed notebook, then
    every file and ledger entry quoting its hash, recompute hashes.sha256 and re-chain the
    ledger from the first entry that changed (hash and prev recomputed)."""
    notebook = next((ws / "10_evidence/runs").glob("RUN-*.ipynb"))
    data = notebook.read_bytes()
    edited = data.replace(b'"passed"', b'"PASSED"', 1)
    assert edited != data
    notebook.write_bytes(edited)
    pending, swaps = [(_sha(data), _sha(edited))], {}
    while pending:
        old, new = pending.pop()
        swaps[old] = new
        for path in sorted(ws.rglob("*")):
            if path.suffix not in (".json", ".md", ".yaml") or not path.is_file():
                continue
            text = path.read_bytes()
            if old.encode() in text:
                path.write_bytes(text.replace(old.encode(), new.encode()))
                if "10_evidence" in path.parts:
                    pending.append((_sha(text), _sha(path.read_bytes())))
    manifest = ws / "10_evidence/hashes.sha256"
    text = manifest.read_text()
    for old, new in swaps.items():
        text = text.replace(old, new)
    manifest.write_text(text)
    entries, prev, changed = [], ledger.GENESIS, False
    for line in _lines(ws):
        rewritten = line
        for old, new in swaps.items():
            rewritten = rewritten.replace(old, new)
        entry = json.loads(rewritten)
        changed = changed or rewritten != line
        if changed:
            entry["prev"] = prev
            entry["hash"] = ledger.entry_hash(entry)
            if strip_signatures:
                entry.pop("sig", None)
        prev = entry["hash"]
        entries.append(entry)
    _write(ws, entries)


# --- the attack the issue is about -----------------------------------------------------------


def test_consistent_rewrite_passes_unsigned_verify_known_limit(
    cli: Cli, sealed: tuple[str, Path]
) -> None:
    """The known limit without signatures: a consistent rewrite verifies (documented)."""
    incident_id, ws = sealed
    consistent_rewrite(ws, strip_signatures=False)
    result = cli("verify", incident_id)
    assert result.exit_code == 0, result.output
    assert "not signed" in result.stdout
    assert "PASSED" in next((ws / "10_evidence/runs").glob("RUN-*.ipynb")).read_text()


@pytest.mark.parametrize("strip", [False, True], ids=["signatures-kept", "signatures-stripped"])
def test_consistent_rewrite_is_caught_with_signatures(
    cli: Cli, signed: tuple[str, Path], keys: dict[str, Path], strip: bool
) -> None:
    incident_id, ws = signed
    assert cli("verify", incident_id, "--allowed-signers", keys["alice_signers"]).exit_code == 0
    consistent_rewrite(ws, strip_signatures=strip)
    rewritten = _lines(ws)
    # without --expect-head, and even without an allowed_signers list
    for extra in ([], ["--allowed-signers", str(keys["alice_signers"])]):
        result = cli("verify", incident_id, *extra)
        assert result.exit_code == 1, result.output
        # a verifier without the key does not append an unsigned verdict to a signed ledger
        assert "verdict not recorded in the ledger" in result.stdout
        assert _lines(ws) == rewritten
        expected = "unsigned after signed entry" if strip else "signature was made for another"
        assert expected in result.stdout, result.stdout
        assert "subjects differ" in result.stdout or strip, result.stdout


# --- signatures on every entry, from every process ----------------------------------------------


def test_every_entry_is_signed_and_verify_names_the_signer(
    cli: Cli, signed: tuple[str, Path], keys: dict[str, Path]
) -> None:
    incident_id, ws = signed
    entries = _entries(ws)
    kinds = {str(e["kind"]) for e in entries}
    # entries written by the CLI, the run worker's seal and the kernel's record helper
    assert {"incident.opened", "run.started", "run"} <= kinds, kinds
    assert any(k.startswith("action") or k == "check" for k in kinds), kinds
    assert all("sig" in e for e in entries)
    assert all("PRIVATE KEY" not in line for line in _lines(ws))
    result = cli("verify", incident_id, "--allowed-signers", keys["alice_signers"], "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    signers = report["signatures"]["entries"]
    assert [s["seq"] for s in signers] == [e["seq"] for e in entries]
    assert {s["signer"] for s in signers} == {"alice@example.org"}
    text = cli("verify", incident_id, "--allowed-signers", keys["alice_signers"]).stdout
    assert "signed by alice@example.org" in text
    # the verify that just passed appended a (signed) flag entry? only when it changed state
    assert all("sig" in e for e in _entries(ws))


def test_signature_by_a_key_not_in_allowed_signers_fails(
    cli: Cli, signed: tuple[str, Path], keys: dict[str, Path]
) -> None:
    incident_id, _ = signed
    result = cli("verify", incident_id, "--allowed-signers", keys["bob_signers"])
    assert result.exit_code == 1
    assert "which is not in bob_signers" in result.stdout, result.stdout


def test_tampered_signature_fails(
    cli: Cli, signed: tuple[str, Path], keys: dict[str, Path]
) -> None:
    incident_id, ws = signed
    entries = _entries(ws)
    sig = entries[1]["sig"]
    assert isinstance(sig, dict)
    armored = str(sig["signature"]).splitlines()
    raw = bytearray(base64.b64decode("".join(armored[1:-1])))
    raw[-5] ^= 0x01  # inside the ed25519 signature bytes
    body = base64.b64encode(bytes(raw)).decode()
    sig["signature"] = "\n".join([armored[0], body, armored[-1]]) + "\n"
    _write(ws, entries)
    for extra in ([], ["--allowed-signers", str(keys["alice_signers"])]):
        result = cli("verify", incident_id, *extra)
        assert result.exit_code == 1
        assert "ledger entry 1: bad signature" in result.stdout, result.stdout


def test_signature_copied_from_another_incident_fails(
    cli: Cli, root: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFM_SIGNING_KEY", str(keys["alice"]))
    ids = [
        cli("incident", "new", "--title", f"Copy {n}", "--severity", "Sev3").stdout.strip()
        for n in (1, 2)
    ]
    for incident_id in ids:
        assert cli("incident", "note", incident_id, "--impact", "same text").exit_code == 0
    victim, donor = (_entries(root / i) for i in ids)
    victim[1]["sig"] = donor[1]["sig"]
    _write(root / ids[0], victim)
    result = cli("verify", ids[0], "--allowed-signers", keys["alice_signers"])
    assert result.exit_code == 1
    assert f"made for an entry of {ids[1]}" in result.stdout
    assert "copied from another incident" in result.stdout
    # relabelled to look like this incident's: the signature no longer verifies
    sig = dict(donor[1]["sig"])  # type: ignore[call-overload]
    sig.update(incident=ids[0], entry=victim[1]["hash"])
    victim[1]["sig"] = sig
    _write(root / ids[0], victim)
    result = cli("verify", ids[0], "--allowed-signers", keys["alice_signers"])
    assert result.exit_code == 1
    assert "ledger entry 1: bad signature" in result.stdout, result.stdout


# --- require-signatures, no key, bad keys ------------------------------------------------------


def test_required_signatures_cannot_be_skipped(
    cli: Cli, root: Path, keys: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFM_SIGNING_KEY", "")
    refused = cli("incident", "new", "--title", "R", "--severity", "Sev2", "--require-signatures")
    assert refused.exit_code == 2
    assert "requires signed ledger entries" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not root.exists() or not [p for p in root.iterdir() if p.name.startswith("INC-")]
    made = cli(
        "incident", "new", "--title", "R", "--severity", "Sev2", "--require-signatures",
        "--sign-key", keys["alice"],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    incident_id = made.stdout.strip()
    ws = root / incident_id
    monkeypatch.setenv("KFM_SIGNING_KEY", "")
    before = _lines(ws)
    refused = cli("incident", "note", incident_id, "--impact", "unsigned")
    assert refused.exit_code == 2
    assert f"{incident_id} requires signed ledger entries" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert _lines(ws) == before
    signed_note = cli(
        "incident", "note", incident_id, "--impact", "ok", "--sign-key", keys["alice"]
    )
    assert signed_note.exit_code == 0, signed_note.output
    # a stripped signature is named, even before the first signed entry would say so
    entries = _entries(ws)
    entries[0].pop("sig")
    _write(ws, entries)
    result = cli("verify", incident_id)
    assert result.exit_code == 1
    assert "ledger entry 0: unsigned, but" in result.stdout
    assert "requires signed entries" in result.stdout


def test_no_key_means_unsigned_said_plainly(cli: Cli, incident: tuple[str, Path]) -> None:
    incident_id, ws = incident
    assert all("sig" not in e for e in _entries(ws))
    result = cli("verify", incident_id)
    assert result.exit_code == 0
    assert "ledger entries are not signed (no signing key was configured)" in result.stdout


def test_allowed_signers_on_an_unsigned_ledger_fails(
    cli: Cli, incident: tuple[str, Path], keys: dict[str, Path]
) -> None:
    incident_id, _ = incident
    result = cli("verify", incident_id, "--allowed-signers", keys["alice_signers"])
    assert result.exit_code == 1
    assert "--allowed-signers has nothing to check" in result.stdout


def test_missing_and_passphrase_keys_write_nothing(
    kfm: object, incident: tuple[str, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    incident_id, ws = incident
    before = _lines(ws)
    import os

    for key, words in (
        (str(tmp_path / "absent"), "not found"),
        (str(keys["locked"]), "passphrase-protected and no ssh-agent holds it: run `ssh-add"),
    ):
        env = {**os.environ, "KFM_SIGNING_KEY": key}
        env.pop("SSH_AUTH_SOCK", None)
        done = subprocess.run(
            [str(KFM_BIN), "incident", "note", incident_id, "--impact", "x"],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=120,
            start_new_session=True,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], done.stderr
        assert _lines(ws) == before


@pytest.fixture
def agent(tmp_path: Path, keys: dict[str, Path]) -> Iterator[dict[str, str]]:
    """A private ssh-agent holding the passphrase-protected key (stopped by its pid)."""
    import os
    import signal

    started = subprocess.run(
        ["ssh-agent", "-s", "-a", str(tmp_path / "agent.sock")],
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    ).stdout
    pid = int(started.split("SSH_AGENT_PID=", 1)[1].split(";", 1)[0])
    try:
        askpass = tmp_path / "askpass"
        askpass.write_text("#!/bin/sh\necho 'a passphrase'\n")
        askpass.chmod(0o700)
        env = {"SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        subprocess.run(
            ["ssh-add", str(keys["locked"])],
            env={**os.environ, **env, "SSH_ASKPASS": str(askpass),
                 "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": "none"},
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        yield env
    finally:
        os.kill(pid, signal.SIGTERM)


def test_passphrase_key_held_by_an_agent_signs(
    cli: Cli,
    root: Path,
    keys: dict[str, Path],
    agent: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The key file (or git's `key::` public key) with the agent holding the private key."""
    monkeypatch.setenv("SSH_AUTH_SOCK", agent["SSH_AUTH_SOCK"])
    public = keys["locked"].with_suffix(".pub").read_text().strip()
    signers = _signers(root.parent / "locked_signers", ("carol@example.org", keys["locked"]))
    for key in (str(keys["locked"]), f"key::{public}"):
        monkeypatch.setenv("KFM_SIGNING_KEY", key)
        made = cli("incident", "new", "--title", "Agent", "--severity", "Sev3")
        assert made.exit_code == 0, made.output
        result = cli("verify", made.stdout.strip(), "--allowed-signers", signers)
        assert result.exit_code == 0, result.output
        assert "1 of 1 ledger entries signed by carol@example.org" in result.stdout


def test_git_signing_key_is_used_when_gpg_format_is_ssh(
    cli: Cli, root: Path, keys: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gitconfig"
    config.write_text(f"[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = {keys['alice']}\n")
    monkeypatch.delenv("KFM_SIGNING_KEY", raising=False)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    made = cli("incident", "new", "--title", "G", "--severity", "Sev3")
    assert made.exit_code == 0
    result = cli("verify", made.stdout.strip(), "--allowed-signers", keys["alice_signers"])
    assert result.exit_code == 0, result.output
    assert "signed by alice@example.org" in result.stdout


# --- interoperability and attestations -----------------------------------------------------


def test_ssh_keygen_signature_carries_the_key_we_read(
    signed: tuple[str, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    """Interop of our SSHSIG reading with ssh-keygen: the public key this package extracts
    from a signature is the one `ssh-keygen -l` prints, and `ssh-keygen -Y verify` accepts
    the signature over `signing.message` of the entry."""
    from kfm_runbooks import signing

    _, ws = signed
    entry = _entries(ws)[2]
    sig = entry["sig"]
    assert isinstance(sig, dict)
    blob = signing.signer_public_key(str(sig["signature"]))
    printed = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(keys["alice"].with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    assert signing.fingerprint(blob) == printed
    (tmp_path / "s.sig").write_text(str(sig["signature"]))
    done = subprocess.run(
        ["ssh-keygen", "-Y", "verify", "-f", str(keys["alice_signers"]), "-I",
         "alice@example.org", "-n", "kfm-runbook", "-s", str(tmp_path / "s.sig")],
        input=signing.message(str(entry["incident"]), int(entry["seq"]), str(entry["hash"])),  # type: ignore[call-overload]
        capture_output=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_sealed_session_is_signed_and_attested(
    cli: Cli,
    root: Path,
    sandbox: Path,
    keys: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`open` and `seal` (the JupyterLab path) sign their entries and attest the session."""
    monkeypatch.setenv("KFM_SIGNING_KEY", str(keys["alice"]))
    incident_id = cli("incident", "new", "--title", "S", "--severity", "Sev3").stdout.strip()
    opened = cli(
        "open", CHECKSUM, "--incident", incident_id, "--target", sandbox, "--no-lab", "--json"
    )
    assert opened.exit_code == 0, opened.output
    notebook = json.loads(opened.stdout)["notebook"]
    sealed = cli("seal", incident_id, notebook)
    ws = root / incident_id
    kinds = [e["kind"] for e in _entries(ws)]
    assert "session.opened" in kinds and "session.sealed" in kinds, (kinds, sealed.output)
    assert all("sig" in e for e in _entries(ws))
    assert list((ws / "10_evidence/runs").glob("*.intoto.json"))
    result = cli("verify", incident_id, "--allowed-signers", keys["alice_signers"])
    assert result.exit_code == 0, result.output


def _attestation(ws: Path) -> Path:
    return next((ws / "10_evidence/runs").glob("*.intoto.json"))


def test_attestation_is_accepted_by_securesystemslib(
    signed: tuple[str, Path], keys: dict[str, Path]
) -> None:
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    _, ws = signed
    path = _attestation(ws)
    assert path.name.replace(".intoto.json", ".prov.json") in {
        p.name for p in path.parent.glob("*.prov.json")
    }
    wrapped = json.loads(path.read_text())
    public = load_ssh_public_key(keys["alice"].with_suffix(".pub").read_bytes())
    key = SSlibKey.from_crypto(public, keyid=wrapped["signatures"][0]["keyid"])
    envelope = Envelope.from_dict(json.loads(path.read_text()))
    assert key.keyid in envelope.verify([key], 1)
    statement = json.loads(envelope.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    notebook = next((ws / "10_evidence/runs").glob("RUN-*.ipynb"))
    assert subjects[f"runs/{notebook.name}"] == _sha(notebook.read_bytes())
    predicate = statement["predicate"]
    assert predicate["runbook"]["id"] == CHECKSUM and predicate["outcome"] == "passed"
    assert predicate["actor"] == "tester" and predicate["checks"]
    # the code that made the call, as the run's ledger entry records it
    [run] = [e for e in ledger.check(ws / "10_evidence/ledger.jsonl").entries if e["kind"] == "run"]
    assert predicate["code"] == run["data"]["code"] and predicate["code"]["modules"]
    # the manifest and ledger record the attestation like the PROV document
    assert f"runs/{path.name}" in (ws / "10_evidence/hashes.sha256").read_text()
    # one subject digest changed: the reference verifier rejects it
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    forged = json.loads(path.read_text())
    forged["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(forged).verify([key], 1)
    bob = load_ssh_public_key(keys["bob"].with_suffix(".pub").read_bytes())
    with pytest.raises(VerificationError):
        Envelope.from_dict(json.loads(path.read_text())).verify([SSlibKey.from_crypto(bob)], 1)


def test_no_key_no_attestation_said_plainly(sealed: tuple[str, Path]) -> None:
    _, ws = sealed
    assert not list((ws / "10_evidence/runs").glob("*.intoto.json"))
    run = next(e for e in _entries(ws) if e["kind"] == "run")
    data = run["data"]
    assert isinstance(data, dict)
    assert data["attestation"] == "none: no signing key configured"


# --- the bundle carries it all ----------------------------------------------------------------


def test_bundle_carries_signatures_attestation_and_allowed_signers(
    cli: Cli, signed: tuple[str, Path], keys: dict[str, Path], tmp_path: Path
) -> None:
    incident_id, _ = signed
    out = tmp_path / "b.tar.gz"
    made = cli("bundle", incident_id, "-o", out, "--allowed-signers", keys["alice_signers"])
    assert made.exit_code == 0, made.output
    carried = cli("verify", "--bundle", out)
    assert carried.exit_code == 0, carried.output
    assert "allowed_signers file the bundle carries" in carried.stdout
    assert "signed by alice@example.org" in carried.stdout
    trusted = cli("verify", "--bundle", out, "--allowed-signers", keys["alice_signers"])
    assert trusted.exit_code == 0 and "the bundle carries" not in trusted.stdout
    wrong = cli("verify", "--bundle", out, "--allowed-signers", keys["bob_signers"])
    assert wrong.exit_code == 1
    assert "not in bob_signers" in wrong.stdout
    refused = cli("bundle", incident_id, "-o", tmp_path / "c.tar.gz", "--allowed-signers",
                  keys["bob_signers"])  # fmt: skip
    assert refused.exit_code == 2 and "does not verify" in refused.stderr


def test_attestation_check_names_a_forged_or_mismatched_envelope(keys: dict[str, Path]) -> None:
    """verify's attestation step: signed by the entry's key, subjects = the entry's files."""
    from kfm_runbooks import attestation, signing

    files = [
        ("10_evidence/runs/RUN-x.nb.ipynb", b"notebook"),
        ("10_evidence/runs/RUN-x.prov.json", b"{}"),
    ]
    predicate = {"run_id": "RUN-x", "incident": "INC-20260101-001"}
    outputs = [
        {"path": rel.removeprefix("10_evidence/"), "sha256": _sha(data)} for rel, data in files
    ]
    outputs.append({"path": "runs/RUN-x.intoto.json", "sha256": "0" * 64})
    entry = {"seq": 4, "incident": "INC-20260101-001", "hash": "a" * 64,
             "data": {"run_id": "RUN-x", "outputs": outputs}}  # fmt: skip
    entry["sig"] = signing.sign_entry(str(keys["alice"]), "INC-20260101-001", 4, "a" * 64)
    rel = "10_evidence/runs/RUN-x.intoto.json"

    def envelope(key: str, subjects: list[tuple[str, bytes]]) -> bytes:
        return attestation.envelope(
            attestation.statement(
                [(r.removeprefix("10_evidence/"), _sha(d)) for r, d in subjects], predicate
            ),
            key,
        )

    assert attestation.check(envelope(str(keys["alice"]), files), entry, rel) == []
    forged = attestation.check(envelope(str(keys["bob"]), files), entry, rel)
    assert any("DSSE signature does not verify" in p for p in forged), forged
    fewer = attestation.check(envelope(str(keys["alice"]), files[:1]), entry, rel)
    assert any("subjects differ" in p for p in fewer), fewer
    with pytest.raises(attestation.NoAttestation, match="passphrase"):
        attestation.envelope({}, str(keys["locked"]))
    with pytest.raises(attestation.NoAttestation, match="no signing key"):
        attestation.envelope({}, None)
