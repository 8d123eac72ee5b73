"""One expected-error matcher for every KFM `*.expected_error.txt` dialect."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kfm_runbooks.checks.common import matchers as expected_error
from kfm_runbooks.checks.pipelines import sync
from kfm_runbooks.checks.pipelines.base import SchemaError
from kfm_runbooks.target import load_target

from .conftest import KFM_SAMPLE

MATCHERS = sorted(KFM_SAMPLE.rglob("*" + expected_error.SUFFIX))


def test_every_kfm_matcher_parses() -> None:
    assert len(MATCHERS) == 14
    dialects = set()
    for path in MATCHERS:
        parsed = expected_error.parse(path.read_text())
        assert parsed is not None, path
        dialects.add(parsed.dialect)
    assert dialects == {"json", "pipe", "words"}


@pytest.mark.parametrize(
    ("line", "error", "matched"),
    [
        (
            '{"kind":"schema","field":"/a","keyword":"const","contains":"no_op"}',
            SchemaError("/a", "const", "'no_op' was expected"),
            True,
        ),
        (
            '{"kind":"schema","field":"/a","keyword":"const","contains":"no_op"}',
            SchemaError("/b", "const", "'no_op' was expected"),
            False,
        ),
        (
            "SCHEMA_INVALID|/|schema constraint failed: required",
            SchemaError("/", "required", "'x' is a required property"),
            True,
        ),
        (
            "SCHEMA_INVALID|/|schema constraint failed: required",
            SchemaError("/", "enum", "'x' is not one of"),
            False,
        ),
        ("required", SchemaError("/", "required", "'run_id' is a required property"), True),
        (
            "additional properties",
            SchemaError("/", "additionalProperties", "Additional properties are not allowed"),
            True,
        ),
        ("enum|pattern|date-time", SchemaError("/t", "format", "'x' is not a 'date-time'"), True),
        (
            "enum|pattern|date-time",
            SchemaError("/", "required", "'x' is a required property"),
            False,
        ),
    ],
)
def test_dialects_match_schema_errors(line: str, error: SchemaError, matched: bool) -> None:
    parsed = expected_error.parse(line)
    assert parsed is not None and parsed.matches(error) is matched


@pytest.mark.parametrize("line", ["", "{not json", '{"kind":"other"}', "a\nb", "/etc/passwd ;"])
def test_unknown_forms_are_unparseable(line: str) -> None:
    assert expected_error.parse(line) is None


def test_beside_refuses_symlinks_and_oversized_files(tmp_path: Path) -> None:
    record = tmp_path / "x.json"
    record.write_text("{}")
    assert expected_error.beside(record) == (None, None)
    (tmp_path / "elsewhere.txt").write_text("required")
    os.symlink(tmp_path / "elsewhere.txt", tmp_path / "x.expected_error.txt")
    assert expected_error.beside(record) == (None, expected_error.UNREADABLE)
    (tmp_path / "x.expected_error.txt").unlink()
    (tmp_path / "x.expected_error.txt").write_text("required|" * 1000)
    assert expected_error.beside(record) == (None, expected_error.UNPARSEABLE)


def test_pipelines_read_the_jsonschema_word_dialect(tmp_path: Path) -> None:
    """KFM's older dialect (`required`, as catalog labels write it) is no longer
    EXPECTED_ERROR_UNPARSEABLE in the pipelines runbooks: the same matcher reads it."""
    invalid = KFM_SAMPLE / "fixtures/contracts/v1/runtime/run_receipt/invalid"
    (tmp_path / "receipts").mkdir()
    shutil.copy(invalid / "invalid_1.json", tmp_path / "receipts/invalid_1.json")
    (tmp_path / "receipts/invalid_1.expected_error.txt").write_text("required\n")
    schema = KFM_SAMPLE / "schemas/contracts/v1/runtime/run_receipt.schema.json"
    (tmp_path / "t.yaml").write_text(
        f"name: t\npipelines_sync:\n  receipts: [receipts]\n  schema: {schema}\n"
    )
    config = sync.SyncConfig.from_target(load_target(tmp_path / "t.yaml"))
    report, _ = sync.scan_receipt(tmp_path / "receipts/invalid_1.json", config)
    assert report.details["expected_error_matched"] is True
    assert "EXPECTED_ERROR_UNPARSEABLE" not in report.codes
    assert "EXPECTED_ERROR_NOT_REPRODUCED" not in report.codes
