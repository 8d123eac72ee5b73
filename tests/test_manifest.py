"""hashes.sha256 in GNU coreutils format, checked by the real sha256sum binary."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from kfm_runbooks import manifest


@pytest.mark.parametrize(
    "name",
    [
        "plain.txt",
        "with space.txt",
        "back\\slash.txt",
        "new\nline.txt",
        "carriage\rreturn.txt",
        "ümlaut-é.txt",
        "sub/dir/file.json",
    ],
    ids=["plain", "space", "backslash", "newline", "cr", "unicode", "nested"],
)
def test_lines_are_accepted_by_sha256sum(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"evidence bytes " + name.encode())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest.append(tmp_path / "hashes.sha256", [(digest, name)])
    check = subprocess.run(
        ["sha256sum", "--strict", "-c", "hashes.sha256"], cwd=tmp_path, capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    [entry] = manifest.read(tmp_path / "hashes.sha256")
    assert entry.name == name and entry.sha256 == digest


def test_our_parser_reads_what_sha256sum_writes(tmp_path: Path) -> None:
    names = ["a\\b", "c\nd", "e f"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    out = subprocess.run(["sha256sum", *names], cwd=tmp_path, capture_output=True, check=True)
    parsed = manifest.parse(out.stdout.decode())
    assert [e.name for e in parsed] == names


def test_garbage_line_is_reported_with_its_number() -> None:
    with pytest.raises(manifest.ManifestSyntaxError, match="line 2"):
        manifest.parse(f"{'0' * 64}  ok\nnot a hash line\n")
