"""Bundles that lie: sizes and names are checked from the headers before a byte is written;
`bundle` streams the workspace instead of holding it in memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from .conftest import KFM_BIN, Cli

pytestmark = pytest.mark.slow
INCIDENT = "INC-20260101-001"
BOMB = 64 << 20  # bytes of zeros: compresses to ~64 KiB


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        step = self.left if size < 0 else min(size, self.left)
        self.left -= step
        return b"\0" * step


def _bundle(path: Path, meta: Any, members: list[tuple[str, int, io.RawIOBase | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        raw = json.dumps(meta).encode() if not isinstance(meta, bytes) else meta
        info = tarfile.TarInfo("BUNDLE.json")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
        for name, size, stream in members:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, stream)
    return path


def _verify_capped(bundle: Path, tmpdir: Path) -> subprocess.CompletedProcess[str]:
    """`verify --bundle` in a process that may not write any file over 1 MiB (SIGXFSZ)."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    return subprocess.run(
        [str(KFM_BIN), "verify", "--bundle", str(bundle)],
        env={**os.environ, "TMPDIR": str(tmpdir)},
        preexec_fn=cap,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _meta(files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"incident_id": INCIDENT, "ledger_head": None, "files": files}


@pytest.mark.parametrize("listed", [None, 16], ids=["unlisted", "listed-smaller"])
def test_a_zip_bomb_is_refused_from_its_header(tmp_path: Path, listed: int | None) -> None:
    name = f"{INCIDENT}/10_evidence/logs/zeros.bin"
    files = [] if listed is None else [{"path": name, "sha256": "0" * 64, "size": listed}]
    bundle = _bundle(tmp_path / "bomb.tar.gz", _meta(files), [(name, BOMB, Zeros(BOMB))])
    assert bundle.stat().st_size < 1 << 20
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    result = _verify_capped(bundle, tmpdir)
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "zeros.bin" in result.stdout
    assert list(tmpdir.iterdir()) == []


def test_bundle_json_paths_never_leave_the_bundle(tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    outside = tmpdir / "outside.txt"
    outside.write_text("not in the bundle\n")
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    meta = _meta([{"path": "../outside.txt", "sha256": digest, "size": outside.stat().st_size}])
    bundle = _bundle(tmp_path / "escape.tar.gz", meta, [])
    result = _verify_capped(bundle, tmpdir)
    assert result.returncode == 1
    assert "files[0]: path '../outside.txt' is not a relative path inside the bundle" in (
        result.stdout
    )


@pytest.mark.parametrize(
    ("meta", "named"),
    [
        (b"{not json", "BUNDLE.json is not valid JSON"),
        ([1, 2], "BUNDLE.json is not a JSON object"),
        ({"incident_id": INCIDENT, "files": {"a": 1}}, "BUNDLE.json: files is not a list"),
        ({"incident_id": INCIDENT, "files": ["x"]}, "BUNDLE.json: files[0] is not an object"),
        (
            {"incident_id": INCIDENT, "files": [{"path": f"{INCIDENT}/x", "size": 1}]},
            "BUNDLE.json: files[0]: sha256 None is not 64 lowercase hex digits",
        ),
        ({"incident_id": "../x", "files": []}, "BUNDLE.json: incident_id '../x' is not"),
    ],
    ids=["not-json", "not-object", "files-not-list", "item-not-object", "no-sha256", "bad-id"],
)
def test_a_malformed_bundle_json_is_a_named_failure(
    cli: Cli, tmp_path: Path, meta: Any, named: str
) -> None:
    bundle = _bundle(tmp_path / "bad.tar.gz", meta, [])
    result = cli("verify", "--bundle", str(bundle))
    assert result.exit_code == 1, result.output
    assert named in result.stdout


def test_bundle_streams_the_workspace(
    cli: Cli, incident: tuple[str, Path], sandbox: Path, tmp_path: Path
) -> None:
    """A 192 MiB evidence file is bundled and verified in far less memory than its size."""
    import kfm_runbooks.record as rb

    incident_id, ws = incident
    size = 192 << 20
    rb.start(incident_id, ws, sandbox).save_evidence("logs", "big.bin", b"\0" * size)
    probe = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:])\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = tmp_path / "big.tar.gz"
    for command in (["bundle", incident_id, "-o", str(out)], ["verify", "--bundle", str(out)]):
        measured = subprocess.run(
            [sys.executable, "-c", probe, str(KFM_BIN), *command],
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        code, peak_kib = map(int, measured.stdout.split()[-2:])
        assert code == 0, measured.stderr
        assert peak_kib * 1024 < size // 2, f"{command[0]} peaked at {peak_kib} KiB"
