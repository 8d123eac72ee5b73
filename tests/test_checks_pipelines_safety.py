"""Pipelines checks: hostile input becomes findings (never crashes, never opened outside its
folder), and every state change is reversible and idempotent."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from pathlib import Path

from kfm_runbooks.checks import UNDO_OPS, undo_op
from kfm_runbooks.checks.common.matchers import parse as parse_matcher
from kfm_runbooks.checks.pipelines import determinism, releases, sync, watchers
from kfm_runbooks.checks.pipelines.base import contained, read_json
from kfm_runbooks.target import load_target

INCIDENT = "INC-20260101-001"


def _never_blocks(work: Callable[[], object]) -> object:
    """Run `work` in a thread: a FIFO on its path would block any open()."""
    result: list[object] = []
    worker = threading.Thread(target=lambda: result.append(work()), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the scan opened a path outside its folder"
    return result[0]


def test_strict_reader_turns_bad_json_into_codes(tmp_path: Path) -> None:
    cases = {
        "dup.json": b'{"a": 1, "a": 2}',
        "nan.json": b'{"a": NaN}',
        "bad.json": b"{",
        "list.json": b"[1]",
        "latin.json": b'{"a": "\xff"}',
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "link.json").symlink_to(tmp_path / "dup.json")
    codes = {name: read_json(tmp_path / name)[1] for name in [*cases, "link.json", "none.json"]}
    assert codes == {
        "dup.json": "JSON_DUPLICATE_KEY",
        "nan.json": "JSON_NONFINITE_NUMBER",
        "bad.json": "JSON_INVALID",
        "list.json": "ROOT_NOT_OBJECT",
        "latin.json": "JSON_NOT_UTF8",
        "link.json": "INPUT_SYMLINK_DENIED",
        "none.json": "INPUT_NOT_FILE",
    }


def test_contained_paths(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert contained(tmp_path, "../x")[1] == "PATH_ESCAPE"
    assert contained(tmp_path, "/etc/passwd")[1] == "PATH_ESCAPE"
    assert contained(tmp_path, "a/./b")[1] == "PATH_ESCAPE"
    assert contained(tmp_path, "a\\b")[1] == "PATH_ESCAPE"
    assert contained(tmp_path, "link/x")[1] == "SYMLINK_DENIED"
    assert contained(tmp_path, "real/x") == (tmp_path / "real/x", None)


def test_matcher_forms() -> None:
    json_form = parse_matcher('{"kind":"schema","field":"/x","keyword":"const","contains":"y"}')
    pipe_form = parse_matcher("SCHEMA_INVALID|/|schema constraint failed: required")
    assert json_form is not None and (json_form.field, json_form.keyword) == ("/x", "const")
    assert pipe_form is not None and (pipe_form.field, pipe_form.keyword) == ("/", "required")
    assert parse_matcher("{garbage") is None and parse_matcher("a\nb") is None


# --- watchers --------------------------------------------------------------------------


def _registry(sandbox: Path) -> Path:
    return sandbox.parent / "pipelines/watchers/watcher_registry.json"


def test_escaping_spec_path_is_never_opened(sandbox: Path) -> None:
    base = sandbox.parent / "pipelines/watchers"
    os.mkfifo(sandbox.parent / "outside.yaml")
    doc = json.loads(_registry(sandbox).read_text())
    doc["watchers"][0]["spec_path"] = "pipeline_specs/../../../outside.yaml"
    _registry(sandbox).write_text(json.dumps(doc))
    (base / "pipeline_specs/watchers/evil.json").symlink_to(sandbox.parent / "outside.yaml")
    doc["watchers"][1]["spec_path"] = "pipeline_specs/watchers/evil.json"
    _registry(sandbox).write_text(json.dumps(doc))
    config = watchers.WatcherConfig.from_target(load_target(sandbox))
    scan = _never_blocks(lambda: watchers.scan(config))
    assert isinstance(scan, watchers.WatcherScan)
    codes = scan.registries[0].codes
    assert "SPEC_PATH_INVALID" in codes and "REGISTRY_SPEC_HASH_MISMATCH" in codes


def test_malformed_registry_and_state_are_findings(sandbox: Path) -> None:
    _registry(sandbox).write_text('{"watchers": [], "watchers": []}')
    state = sandbox.parent / "pipelines/watchers/state.json"
    state.write_text("not json")
    scan = watchers.scan(watchers.WatcherConfig.from_target(load_target(sandbox)))
    assert scan.registries[0].outcome == "ERROR"
    assert scan.registries[0].codes == ["JSON_DUPLICATE_KEY"]
    assert scan.watchers == []  # an invalid registry is not trusted for liveness


def test_scheduled_watcher_without_state_is_hold(sandbox: Path) -> None:
    (sandbox.parent / "pipelines/watchers/state.json").unlink()
    scan = watchers.scan(watchers.WatcherConfig.from_target(load_target(sandbox)))
    assert {f.code for f in scan.held()} == {"WATCHER_STATE_MISSING"}
    assert scan.blocking(watchers.LIVENESS_CODES) == []


def test_pause_and_requeue_reverse_exactly(sandbox: Path) -> None:
    config = watchers.WatcherConfig.from_target(load_target(sandbox))
    state = sandbox.parent / "pipelines/watchers/state.json"
    before = json.loads(state.read_text())
    wid = "kfm.watcher.sbx.hydro_gauges"
    assert watchers.pause_watcher(config, wid, incident=INCIDENT, reason="t")["already"] is False
    assert watchers.pause_watcher(config, wid, incident=INCIDENT, reason="t")["already"] is True
    requeued = watchers.requeue_run(config, wid, incident=INCIDENT)
    assert requeued["requeued"] is True
    assert watchers.requeue_run(config, wid, incident=INCIDENT)["requeued"] is False
    after = watchers.scan(config)
    assert after.affected() == [] and after.stuck() == []
    assert {f.severity for f in after.liveness_findings if f.subject == wid} == {"info"}
    target = load_target(sandbox)
    assert undo_op("pipelines.restore_run")(target, wid, requeued["run"])["restored"] is True
    assert undo_op("pipelines.resume_watcher")(target, wid)["resumed"] is True
    assert watchers.resume_watcher(config, wid)["resumed"] is False
    assert json.loads(state.read_text()) == before


# --- sync ------------------------------------------------------------------------------


def test_hold_and_digest_gate_reverse(sandbox: Path) -> None:
    config = sync.SyncConfig.from_target(load_target(sandbox))
    control = sandbox.parent / "pipelines/sync/control.json"
    before = json.loads(control.read_text())
    source = "https://data.kfm.example/hydro/gauges.csv"
    assert sync.hold_sync(config, source, incident=INCIDENT, reason="t")["already"] is False
    assert sync.hold_sync(config, source, incident=INCIDENT, reason="t")["already"] is True
    gate = sync.set_change_detection(config, source, sync.DIGEST_GATE)
    assert gate == {"source": source, "changed": True, "mode": "content_digest", "previous": "etag"}
    assert sync.set_change_detection(config, source, sync.DIGEST_GATE)["changed"] is False
    scan = sync.scan(config)
    assert scan.unheld_loops() == [] and [h.source for h in scan.looping()] == [source]
    assert {f.severity for f in scan.loop_findings} == {"info"}
    target = load_target(sandbox)
    undo_op("pipelines.set_change_detection")(target, source, "etag")
    assert undo_op("pipelines.release_sync")(target, source)["released"] is True
    assert json.loads(control.read_text()) == before


def test_receipt_bombs_are_findings(sandbox: Path) -> None:
    folder = sandbox.parent / "pipelines/sync/receipts"
    (folder / "huge.json").write_bytes(b'{"a": "' + b"x" * (3 * 1024 * 1024) + b'"}')
    (folder / "deep.json").write_bytes(b"[" * 100000 + b"]" * 100000)
    (folder / "nosync.json").write_text('{"run_id": "x", "smart_sync": {"http_status": 200}}')
    scan = sync.scan(sync.SyncConfig.from_target(load_target(sandbox)))
    codes = {Path(r.file).name: r.codes for r in scan.receipts}
    assert codes["huge.json"] == ["INPUT_TOO_LARGE"]
    assert codes["deep.json"] == ["JSON_INVALID"]
    assert codes["nosync.json"] == ["SYNC_PROFILE_UNREADABLE"]


# --- releases --------------------------------------------------------------------------


def test_manifest_escape_is_never_opened_and_pointer_escape_found(sandbox: Path) -> None:
    root = sandbox.parent / "pipelines/releases"
    os.mkfifo(root / "outside.bin")
    manifest = root / "2026-06-01/MANIFEST.json"
    doc = json.loads(manifest.read_text())
    doc["files"][0]["path"] = "../outside.bin"
    manifest.write_text(json.dumps(doc))
    (root / "current").unlink()
    (root / "current").symlink_to("../../..")
    config = releases.ReleaseConfig.from_target(load_target(sandbox))
    scan = _never_blocks(lambda: releases.scan(config))
    assert isinstance(scan, releases.ReleaseScan)
    escaped = scan.release("2026-06-01")
    assert escaped is not None and "RELEASE_PATH_ESCAPE" in escaped.codes
    assert [f.code for f in scan.pointer_findings] == ["RELEASE_POINTER_ESCAPE"]


def test_repoint_and_withdraw_reverse(sandbox: Path) -> None:
    config = releases.ReleaseConfig.from_target(load_target(sandbox))
    moved = releases.repoint(config, "2026-06-01")
    assert moved == {
        "pointer": "current",
        "changed": True,
        "to": "2026-06-01",
        "from": "2026-06-02",
    }
    assert releases.repoint(config, "2026-06-01")["changed"] is False
    assert (
        releases.withdraw(config, "2026-06-02", incident=INCIDENT, reason="t")["already"] is False
    )
    assert releases.withdraw(config, "2026-06-02", incident=INCIDENT, reason="t")["already"] is True
    after = releases.scan(config)
    assert after.pointer_findings == [] and after.partial_not_withdrawn() == []
    assert config.root is not None
    assert not [p for p in config.root.iterdir() if p.name.endswith(".partial")]
    target = load_target(sandbox)
    assert undo_op("pipelines.reinstate_release")(target, "2026-06-02")["reinstated"] is True
    assert undo_op("pipelines.repoint_release")(target, "2026-06-02")["to"] == "2026-06-02"
    assert [f.code for f in releases.scan(config).pointer_findings] == ["RELEASE_CURRENT_PARTIAL"]


def test_repoint_refuses_a_path(sandbox: Path) -> None:
    import pytest

    from kfm_runbooks.errors import TargetError

    config = releases.ReleaseConfig.from_target(load_target(sandbox))
    with pytest.raises(TargetError):
        releases.repoint(config, "../2026-06-01")


# --- determinism -----------------------------------------------------------------------


def test_run_manifest_escapes_and_record_mismatch(sandbox: Path) -> None:
    runs = sandbox.parent / "pipelines/determinism/runs"
    manifest = runs / "run-20260601a.json"
    doc = json.loads(manifest.read_text())
    doc["output_root"] = "../../../.."
    manifest.write_text(json.dumps(doc))
    (runs / "run-20260601b/out/stations.json").write_text("{}\n")
    scan = determinism.scan(determinism.DeterminismConfig.from_target(load_target(sandbox)))
    codes = {Path(r.file).name: r.codes for r in scan.runs}
    assert codes == {
        "run-20260601a.json": ["RUN_MANIFEST_INVALID"],
        "run-20260601b.json": ["RUN_OUTPUT_HASH_MISMATCH"],
    }


def test_promotion_hold_reverses(sandbox: Path) -> None:
    config = determinism.DeterminismConfig.from_target(load_target(sandbox))
    holds = sandbox.parent / "pipelines/determinism/holds.json"
    before = json.loads(holds.read_text())
    assert (
        determinism.hold_promotion(config, "daily_summary.csv", incident=INCIDENT, reason="t")[
            "already"
        ]
        is False
    )
    assert determinism.is_held(config, "daily_summary.csv")
    scan = determinism.scan(config)
    assert scan.drifting_outputs() == [] and {f.severity for f in scan.drift} == {"info"}
    result = undo_op("pipelines.release_promotion")(load_target(sandbox), "daily_summary.csv")
    assert result["released"] is True
    assert json.loads(holds.read_text()) == before


def test_every_pipelines_undo_op_is_registered() -> None:
    assert {name for name in UNDO_OPS if name.startswith("pipelines.")} == {
        "pipelines.resume_watcher",
        "pipelines.restore_run",
        "pipelines.release_sync",
        "pipelines.set_change_detection",
        "pipelines.repoint_release",
        "pipelines.reinstate_release",
        "pipelines.release_promotion",
    }
