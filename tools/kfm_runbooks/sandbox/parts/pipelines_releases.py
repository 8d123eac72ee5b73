"""Sandbox part: a release tree with two releases and a `current` pointer.

Seeded fault (faulty variant): release 2026-06-02 was published non-atomically: its
manifest lists three files, but `data/stations.geojson` was never written (a temp file
`data/.stations.geojson.7f3a.partial` is left over) and `data/gauges.csv` is truncated —
and `current` already points at it (RBK-pipelines-partial-write). 2026-06-01 is complete.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

ROOT = "pipelines/releases"
RELEASES = [("2026-06-01", "2026-06-01T03:00:00Z"), ("2026-06-02", "2026-06-02T03:00:00Z")]
FILES = [("data/gauges.csv", 3000), ("data/stations.geojson", 1800), ("README.txt", 240)]
PARTIAL = "2026-06-02"


def _content(release: str, name: str, size: int) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{release}/{name}:{counter}".encode()).hexdigest().encode() + b"\n"
        counter += 1
    return bytes(out[:size])


def _release(base: Path, release: str, created: str, partial: bool) -> None:
    folder = base / release
    entries = []
    for name, size in FILES:
        data = _content(release, name, size)
        entries.append(
            {"path": name, "bytes": size, "sha256": "sha256:" + hashlib.sha256(data).hexdigest()}
        )
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if partial and name == "data/stations.geojson":
            (path.parent / ".stations.geojson.7f3a.partial").write_bytes(data[:700])
            continue
        if partial and name == "data/gauges.csv":
            data = data[:1024]
        path.write_bytes(data)
    manifest = {"created_at": created, "files": entries, "release_id": release}
    (folder / "MANIFEST.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / ROOT
    for release, created in RELEASES:
        _release(base, release, created, partial=not clean and release == PARTIAL)
    (base / "current").symlink_to(RELEASES[-1][0])
    section = {"root": ROOT, "pointer": "current", "manifest": "MANIFEST.json"}
    faults = (
        []
        if clean
        else [
            f"pipelines: `current` points at partial release {PARTIAL} (a file missing with a temp "
            "leftover, one truncated) (RELEASE_CURRENT_PARTIAL, RELEASE_FILE_MISSING, "
            "RELEASE_FILE_TRUNCATED, RELEASE_TEMP_LEFTOVER) — RBK-pipelines-partial-write"
        ]
    )
    return {"pipelines_releases": section}, faults
