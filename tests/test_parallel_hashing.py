"""Hashing on every core, each byte once per read-only run (issue 16, item 1)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import kfm_runbooks.record as rb
from kfm_runbooks import digest_memo
from kfm_runbooks._fs import NotRegularError, sha256_many
from kfm_runbooks.checks.catalog import digests, health
from kfm_runbooks.layout import Workspace
from kfm_runbooks.target import load_target


@pytest.fixture(autouse=True)
def _fresh_memo() -> Iterator[None]:
    digest_memo.forget_all()
    yield
    digest_memo.forget_all()


def test_sha256_many_keeps_order_and_reports_each_problem(tmp_path: Path) -> None:
    paths = []
    for index in range(7):
        path = tmp_path / f"f{index}.bin"
        path.write_bytes(os.urandom(1000 + index))
        paths.append(path)
    (tmp_path / "link").symlink_to(paths[0])
    asked = [*paths, tmp_path / "missing", tmp_path / "link"]
    got = sha256_many(asked, jobs=3)
    for path, result in zip(paths, got, strict=False):
        assert result == (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    assert isinstance(got[-2], FileNotFoundError)
    assert isinstance(got[-1], NotRegularError)


def test_a_digest_is_reused_only_while_the_file_is_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "asset.bin"
    path.write_bytes(b"a" * 4096)
    first, reused = digests.file_digest(path, "sha256")
    assert (first, reused) == (hashlib.sha256(b"a" * 4096).hexdigest(), False)
    assert digests.file_digest(path, "sha256") == (first, True)
    # same size, new bytes, mtime put back as it was: ctime still tells
    stat = path.stat()
    path.write_bytes(b"b" * 4096)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again, reused = digests.file_digest(path, "sha256")
    assert reused is False and again == hashlib.sha256(b"b" * 4096).hexdigest()
    # replaced by a rename (a new inode)
    other = tmp_path / "new.bin"
    other.write_bytes(b"b" * 4096)
    other.replace(path)
    assert digests.file_digest(path, "sha256")[1] is False
    assert digests.file_digest(path, "sha256")[1] is True
    assert digest_memo.forget_all() >= 1
    assert digests.file_digest(path, "sha256")[1] is False


def test_a_second_scan_reuses_what_the_first_hashed(sandbox: Path) -> None:
    config = health.CatalogConfig.from_target(load_target(sandbox))
    first = health.scan(config)
    assert first.assets_examined > 0 and first.assets_reused == 0
    second = health.scan(config)
    assert second.assets_reused == second.assets_examined == first.assets_examined
    assert [i.file for i in second.items] == [i.file for i in first.items]  # catalog order
    assert [f.code for f in second.findings] == [f.code for f in first.findings]
    changed = next(config.base.rglob("assets/*.bin"))
    changed.write_bytes(changed.read_bytes() + b"!")
    third = health.scan(config)
    assert third.assets_reused == third.assets_examined - 1


def test_an_applied_action_forgets_every_digest(
    incident: tuple[str, Path], sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    incident_id, path = incident
    workspace = Workspace(path.parent, incident_id)
    with workspace.locked():
        workspace.record("run.started", {"run_id": "RUN-test-memo", "apply": True}, "tester")
    monkeypatch.setenv("KFM_RUN_ID", "RUN-test-memo")
    recorder = rb.start(incident_id, path, sandbox, apply=True)
    asset = next(sandbox.parent.rglob("assets/*.bin"))
    digests.file_digest(asset, "sha256")
    recorder.action("touch nothing", command="noop", change=lambda: None)
    assert digests.file_digest(asset, "sha256")[1] is False
