"""checks.common.files: the one bounded read of a regular file, and file sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from kfm_runbooks.checks.ai import citation_reports as ai_citation_reports
from kfm_runbooks.checks.catalog import health as catalog
from kfm_runbooks.checks.catalog import json_docs as catalog_json
from kfm_runbooks.checks.common import files
from kfm_runbooks.checks.common.files import FileProblem, FileProblemError
from kfm_runbooks.checks.security import base as security_common


def test_reads_a_regular_file_within_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"{}")
    assert files.read_regular(path, 2) == b"{}"
    assert files.read_bounded(path, 2) == (b"{}", None)
    assert files.sha256_file(path) == hashlib.sha256(b"{}").hexdigest()
    assert files.sha256_tagged(path) == "sha256:" + hashlib.sha256(b"{}").hexdigest()


def test_a_symlink_swapped_in_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "s3cr3t"}')
    record = tmp_path / "record.json"
    record.write_text("{}")
    record.unlink()
    record.symlink_to(secret)  # swapped in after whatever check a caller did
    with pytest.raises(FileProblemError) as caught:
        files.read_regular(record, 1024)
    assert caught.value.problem is FileProblem.LINK
    assert "symbolic link" in str(caught.value)
    with pytest.raises(OSError):
        files.sha256_file(record)
    # every domain reader maps it to its own code
    assert catalog_json.read_object(record) == (None, "INPUT_SYMLINK_DENIED")
    assert catalog.read_json_object(record) == (None, "CAT_INPUT_SYMLINK_DENIED")
    assert security_common.read_bytes(record) == (None, "SEC_INPUT_SYMLINK_DENIED")
    assert ai_citation_reports._load_json(record) == (None, "CITATION_REPORT_INPUT_SYMLINK_DENIED")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "record.json"
    os.mkfifo(fifo)  # no writer: a blocking open would never return
    assert files.read_bounded(fifo, 1024) == (None, FileProblem.NOT_REGULAR)
    assert security_common.read_bytes(fifo) == (None, "SEC_FILE_NOT_REGULAR")
    assert catalog_json.read_object(fifo) == (None, "FILE_NOT_FOUND")
    with pytest.raises(OSError):
        files.sha256_file(fifo)


def test_an_oversize_file_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b"0," * 600 + b"0]")
    with pytest.raises(FileProblemError) as caught:
        files.read_regular(path, 1000)
    assert caught.value.problem is FileProblem.TOO_LARGE
    assert str(caught.value).startswith(f"{path}: larger than the 1000-byte limit")
    assert security_common.read_bytes(path, limit=1000) == (None, "SEC_FILE_TOO_LARGE")


def test_missing_and_folders_are_named(tmp_path: Path) -> None:
    assert files.read_bounded(tmp_path / "absent", 10) == (None, FileProblem.MISSING)
    assert files.read_bounded(tmp_path, 10) == (None, FileProblem.NOT_REGULAR)
    assert catalog.read_json_object(tmp_path / "absent") == (None, "CAT_FILE_NOT_FOUND")
