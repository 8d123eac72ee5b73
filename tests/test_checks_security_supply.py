"""Supply-chain checks: lock + RECORD on a fake and the real environment; reversible reinstall."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import os
import re
import threading
import zipfile
from pathlib import Path

import pytest

from kfm_runbooks.checks.security import supply, wheels
from kfm_runbooks.checks.security.base import MAX_FILE_BYTES
from kfm_runbooks.sandbox import create_sandbox
from kfm_runbooks.target import load_target

from . import hostile
from .conftest import ROOT

SITE = ROOT / ".venv" / "lib" / "python3.11" / "site-packages"
ALLOWED = frozenset({"pip", "setuptools", "kfm-runbooks"})


def _config(target: Path) -> supply.EnvConfig:
    return supply.EnvConfig.from_target(load_target(target))


def _codes(scan: supply.EnvScan) -> list[tuple[str, str]]:
    return sorted((f.code, f.subject) for f in scan.findings if f.severity != "info")


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def env(tmp_path: Path) -> supply.EnvConfig:
    return _config(create_sandbox(tmp_path / "sbx"))


def test_sandbox_faults_are_found(env: supply.EnvConfig, tmp_path: Path) -> None:
    scan = supply.scan(env)
    assert _codes(scan) == [
        ("SEC_PKG_FILE_TAMPERED", "sbx_tile_cache-0.9.0.dist-info"),
        ("SEC_PKG_VERSION_DRIFT", "sbx_http_client-2.4.0.dist-info"),
    ]
    states = {d.name: d.state for d in scan.dists}
    assert states == {
        "sbx-geo-utils": "ok",
        "sbx-http-client": "drift",
        "sbx-tile-cache": "integrity",
    }
    clean = supply.scan(_config(create_sandbox(tmp_path / "clean", clean=True)))
    assert clean.clean and _codes(clean) == []


def _oracle() -> tuple[set[str], set[str], int]:
    """Independent of our scanner: importlib.metadata and a plain reading of the lock."""
    pins = {}
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line.strip())
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    unpinned, drift, hashed = set(), set(), 0
    for dist in importlib.metadata.distributions(path=[str(SITE)]):
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if key not in pins and key not in ALLOWED:
            unpinned.add(key)
        elif key in pins and pins[key] != dist.version:
            drift.add(key)
        hashed += sum(1 for f in dist.files or [] if f.hash is not None)
    return unpinned, drift, hashed


def test_this_projects_venv_against_its_lock() -> None:
    """Run for real on .venv: what pip wrote (RECORD) and what the lock pins."""
    config = supply.EnvConfig(
        site_packages=SITE,
        root=ROOT / ".venv",
        lock=ROOT / "requirements/constraints.txt",
        allow_unpinned=ALLOWED,
        flag=ROOT / ".kfm/never-written.flag",
        wheelhouse=None,
        backup=ROOT / ".kfm/never-written-backup",
    )
    scan = supply.scan(config)
    unpinned, drift, hashed = _oracle()
    found = {f.code: set() for f in scan.findings}
    for dist in scan.dists:
        for code in dist.codes:
            found.setdefault(code, set()).add(dist.key)
    assert found.get("SEC_PKG_UNPINNED", set()) == unpinned
    assert found.get("SEC_PKG_VERSION_DRIFT", set()) == drift
    assert scan.with_codes(supply.INTEGRITY_CODES) == []  # pip's RECORD still holds
    assert sum(d.files_recorded for d in scan.dists) == hashed
    assert sum(d.files_verified for d in scan.dists) == hashed
    assert not config.flag.exists()


def test_record_paths_leaving_the_environment_are_never_opened(
    env: supply.EnvConfig, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.py"
    os.mkfifo(outside)  # opening it would block the scan
    record = env.site_packages / "sbx_geo_utils-1.4.2.dist-info/RECORD"
    rel = os.path.relpath(outside, env.site_packages)
    record.write_text(
        record.read_text() + f"{rel},sha256=abc,1\n/etc/hostname,sha256=abc,1\n", encoding="utf-8"
    )
    result: dict[str, supply.EnvScan] = {}
    worker = threading.Thread(target=lambda: result.update(scan=supply.scan(env)), daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "the scan opened a path outside the environment"
    escapes = result["scan"].with_codes(frozenset({"SEC_PKG_RECORD_PATH_ESCAPE"}))
    assert len(escapes) == 2


def test_hostile_environments(env: supply.EnvConfig) -> None:
    site = env.site_packages
    (site / "zz_startup.pth").write_text("import os\n")
    (site / "sbx_geo_utils-1.4.2.dist-info/RECORD").unlink()
    meta = site / "sbx_http_client-2.4.0.dist-info/METADATA"
    meta.write_text("garbage\n")
    record = site / "sbx_tile_cache-0.9.0.dist-info/RECORD"
    record.write_text(
        record.read_text().replace(
            "sbx_tile_cache/__init__.py,sha256=", "sbx_tile_cache/__init__.py,md5="
        )
    )
    (site / "sbx_tile_cache/cache.py").unlink()
    codes = _codes(supply.scan(env))
    assert ("SEC_PKG_UNOWNED_PTH", "zz_startup.pth") in codes
    assert ("SEC_PKG_RECORD_MISSING", "sbx_geo_utils-1.4.2.dist-info") in codes
    assert ("SEC_PKG_METADATA_MISSING", "sbx_http_client-2.4.0.dist-info") in codes
    assert ("SEC_PKG_RECORD_WEAK_HASH", "sbx_tile_cache-0.9.0.dist-info") in codes
    assert ("SEC_PKG_FILE_MISSING", "sbx_tile_cache-0.9.0.dist-info") in codes


def test_lock_parsing(tmp_path: Path) -> None:
    lock = tmp_path / "constraints.txt"
    lock.write_text(
        "# comment\n"
        "Foo_Bar==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n"
        "baz[extra]==2.0 ; python_version >= '3.8'  # pinned\n"
        "-c other.txt\n"
        "loose>=1.0\n"
        "baz==3.0\n"
    )
    pins, findings = supply.parse_lock(lock)
    assert pins["foo-bar"].version == "1.0" and pins["foo-bar"].hashes == ("sha256:" + "a" * 64,)
    assert pins["baz"].version == "2.0" and pins["baz"].hashes == ()
    assert sorted((f.code, f.field) for f in findings) == [
        ("SEC_LOCK_DUPLICATE", ":7"),
        ("SEC_LOCK_NOT_PINNED", ":6"),
        ("SEC_LOCK_OPTION_IGNORED", ":5"),
    ]
    missing, problems = supply.parse_lock(tmp_path / "nope.txt")
    assert missing == {} and [f.code for f in problems] == ["SEC_LOCK_MISSING"]


def test_a_missing_lock_is_held_not_guessed(env: supply.EnvConfig) -> None:
    env.lock.unlink()
    scan = supply.scan(env)
    assert [(f.code, f.severity) for f in scan.lock_findings] == [("SEC_LOCK_MISSING", "hold")]
    assert not scan.with_codes(supply.LOCK_CODES)  # nothing is "unpinned" against no lock
    assert scan.with_codes(frozenset({"SEC_PKG_FILE_TAMPERED"}))  # RECORD checks still run


def test_reinstall_from_wheel_repairs_and_restores(env: supply.EnvConfig) -> None:
    before = _tree(env.site_packages)
    results = [
        wheels.reinstall_from_wheel(env, d.key, incident="INC-20260601-001")
        for d in supply.scan(env).faulty
    ]
    assert [r["package"] for r in results] == ["sbx-http-client", "sbx-tile-cache"]
    assert supply.scan(env).clean
    again = wheels.reinstall_from_wheel(env, "sbx-tile-cache", incident="INC-20260601-001")
    assert again["already"]
    for result in results:
        assert wheels.restore_backup(env, result["backup_id"])["restored"]
    assert _tree(env.site_packages) == before
    assert not wheels.restore_backup(env, results[0]["backup_id"])["restored"]


def test_reinstall_refuses_wheels_the_lock_does_not_vouch_for(env: supply.EnvConfig) -> None:
    assert env.wheelhouse is not None
    wheel = env.wheelhouse / "sbx_tile_cache-0.9.0-py3-none-any.whl"
    wheel.write_bytes(wheel.read_bytes() + b"\0")  # not the bytes the lock hashed
    with pytest.raises(ValueError, match="matching the lock's hash"):
        wheels.reinstall_from_wheel(env, "sbx-tile-cache", incident="INC-20260601-001")
    with pytest.raises(ValueError, match="not pinned"):
        wheels.reinstall_from_wheel(env, "requests", incident="INC-20260601-001")


def test_wheel_members_escaping_site_packages_are_refused(tmp_path: Path) -> None:
    data = b"print('x')\n"
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("../../evil.py", data)
        archive.writestr("evil-1.0.dist-info/RECORD", f"../../evil.py,sha256={digest},11\n")
    with pytest.raises(ValueError, match="unsafe member path"):
        wheels._read_wheel(wheel)


def test_untrusted_flag_is_idempotent_and_reversible(env: supply.EnvConfig) -> None:
    assert supply.promotion_allowed(env)
    first = supply.mark_untrusted(
        env, incident="INC-20260601-001", reasons=["SEC_PKG_FILE_TAMPERED"]
    )
    assert not first["already"] and not supply.promotion_allowed(env)
    assert supply.mark_untrusted(env, incident="INC-20260601-001", reasons=[])["already"]
    assert supply.clear_untrusted(env, "INC-20260601-002") == {
        "cleared": False,
        "reason": "flag belongs to INC-20260601-001",
    }
    assert supply.clear_untrusted(env, "INC-20260601-001") == {"cleared": True}
    assert supply.promotion_allowed(env)


def test_reinstall_command_is_hash_checked_when_the_lock_has_hashes(env: supply.EnvConfig) -> None:
    assert supply.reinstall_command(env, ["sbx-tile-cache"]) == (
        "python -m pip install --force-reinstall --no-deps --require-hashes -r constraints.txt"
    )
    env.lock.write_text("sbx-tile-cache==0.9.0\n")
    assert supply.reinstall_command(env, ["sbx-tile-cache"]) == (
        "python -m pip install --force-reinstall --no-deps -c constraints.txt sbx-tile-cache==0.9.0"
    )


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_a_lock_or_flag_that_is_not_a_small_regular_file_is_held(tmp_path: Path, kind: str) -> None:
    lock = tmp_path / "constraints.txt"
    hostile.plant(lock, kind, b"foo==1.0\n", MAX_FILE_BYTES)
    pins, findings = supply.parse_lock(lock)
    assert pins == {} and [(f.code, f.severity) for f in findings] == [
        ("SEC_LOCK_UNREADABLE", "hold")
    ]


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_an_untrusted_flag_that_is_not_a_small_regular_file_still_blocks(
    env: supply.EnvConfig, kind: str
) -> None:
    hostile.plant(env.flag, kind, b'{"untrusted": false}', MAX_FILE_BYTES)
    assert supply.untrusted(env) == {
        "untrusted": True,
        "reason": "unreadable flag (still blocks promotion)",
    }
    assert not supply.promotion_allowed(env)
