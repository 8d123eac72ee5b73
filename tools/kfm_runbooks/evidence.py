"""Publishing files into a workspace so that a kill at any moment is finished or named.

    stage      every file written to `.<name>.partial` beside its destination, fsynced
    intent     a `publish.intent` ledger entry: each file's path, sha256, size and staged
               name, and the entry (kind, data, views) that will record it
    publish    each staged file linked to its name (never replacing one), then unlinked
    manifest   hashes.sha256 lines for the files under 10_evidence/
    record     the announced entry, chained right after the intent

All under the workspace lock. The intent is then the newest ledger entry until the record
is written, so a kill anywhere in between leaves it at the head, where the next writer
(any command, any kernel: `Workspace.record`) finds it and `finish`es it: staged files
still there are published, missing manifest lines appended, and the announced entry
written (`recovered: true`). Were a staged file gone or a destination taken by other
bytes, nothing is guessed: a `publish.torn` entry names what was lost and records what
exists. Either way `verify` can tell a torn publication from a planted file.
Light imports only: kernels publish evidence too.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from . import ledger, manifest
from ._fs import NotRegularError, _fsync_dir, sha256_bytes, sha256_regular
from .views import TIMELINE, timeline_line
from .vocab import LedgerKind

if TYPE_CHECKING:
    from .layout import Workspace

INTENT = LedgerKind.PUBLISH_INTENT
TORN = LedgerKind.PUBLISH_TORN
EVIDENCE_PREFIX = "10_evidence/"


def staged_name(rel: str) -> str:
    """`runs/.RUN-x.ipynb.partial` for `runs/RUN-x.ipynb` (same folder: atomic link)."""
    folder, _, name = rel.rpartition("/")
    return f"{folder}/.{name}.partial" if folder else f".{name}.partial"


def _stage(workspace: Workspace, rel: str, data: bytes) -> str:
    staged = staged_name(rel)
    path = workspace.path / staged
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)
    return staged


def _link(workspace: Workspace, staged: str, rel: str) -> None:
    source, dest = workspace.path / staged, workspace.path / rel
    os.link(source, dest, follow_symlinks=False)
    source.unlink()
    _fsync_dir(dest.parent)


def publish_locked(
    workspace: Workspace,
    files: list[tuple[str, bytes]],
    kind: str,
    data: dict[str, Any],
    actor: str,
    views: ledger.Views | None = None,
) -> dict[str, Any]:
    """Publish `files` (paths relative to the workspace) and record them with one entry of
    `kind`; returns that entry. FileExistsError, before anything is written, when a
    destination exists. Caller holds the lock."""
    taken = [rel for rel, _ in files if os.path.lexists(workspace.path / rel)]
    if taken:
        raise FileExistsError(f"{taken[0]} already exists: evidence is never overwritten")
    last = ledger.head(workspace.ledger)
    if last is not None:
        workspace.complete(last)
        last = ledger.head(workspace.ledger)
    staged: list[dict[str, Any]] = []
    try:
        for rel, content in files:
            staged.append(
                {
                    "path": rel,
                    "sha256": sha256_bytes(content),
                    "size": len(content),
                    "staged": _stage(workspace, rel, content),
                }
            )
    except BaseException:
        for item in staged:
            (workspace.path / item["staged"]).unlink(missing_ok=True)
        raise
    seq = 0 if last is None else int(last["seq"]) + 1
    texts = dict(views(seq + 1) if callable(views) else views or {})
    announced = {"kind": kind, "data": data, "views": texts}
    intent = workspace.append_entry(INTENT, {"files": staged, "entry": announced}, actor)
    for item in staged:
        _link(workspace, item["staged"], item["path"])
    _manifest_lines(workspace, staged)
    return workspace.append_entry(kind, {**data, "intent": intent["seq"]}, actor, texts)


def _manifest_lines(workspace: Workspace, files: list[dict[str, Any]]) -> None:
    wanted = [
        (str(f["sha256"]), str(f["path"]).removeprefix(EVIDENCE_PREFIX))
        for f in files
        if str(f["path"]).startswith(EVIDENCE_PREFIX)
    ]
    if not wanted:
        return
    present = {(e.sha256, e.name) for e in manifest.read(workspace.manifest)}
    manifest.append(workspace.manifest, [w for w in wanted if w not in present])


def _state(workspace: Workspace, item: dict[str, Any]) -> str:
    """'published', 'staged' (ready to link), 'lost' or 'conflict' for one announced file."""
    dest = workspace.path / str(item["path"])
    try:
        if sha256_regular(dest, workspace.path)[0] == item["sha256"]:
            return "published"
        return "conflict"
    except FileNotFoundError:
        pass
    except (NotRegularError, OSError):
        return "conflict"
    with contextlib.suppress(OSError):
        staged = workspace.path / str(item["staged"])
        if sha256_regular(staged, workspace.path)[0] == item["sha256"]:
            return "staged"
    return "lost"


def finish(workspace: Workspace, intent: dict[str, Any]) -> dict[str, Any]:
    """Finish (or mark torn) a publication a kill interrupted; `intent` is the head entry.
    Caller holds the lock. Returns the entry written."""
    files = list(intent["data"].get("files") or [])
    announced = intent["data"].get("entry") or {}
    states = {str(f["path"]): _state(workspace, f) for f in files}
    for item in files:
        if states[str(item["path"])] == "staged":
            _link(workspace, str(item["staged"]), str(item["path"]))
            states[str(item["path"])] = "published"
    present = [f for f in files if states[str(f["path"])] == "published"]
    _manifest_lines(workspace, present)
    bad = {path: state for path, state in states.items() if state != "published"}
    if not bad:
        data = {**announced.get("data", {}), "intent": intent["seq"], "recovered": True}
        return workspace.append_entry(
            str(announced.get("kind")), data, intent["actor"], announced.get("views") or None
        )
    data = {
        "intent": intent["seq"],
        "announced": announced.get("kind"),
        "run_id": (announced.get("data") or {}).get("run_id"),
        "lost": sorted(bad),
        "outputs": [
            {"path": str(f["path"]).removeprefix(EVIDENCE_PREFIX), "sha256": f["sha256"]}
            for f in present
            if str(f["path"]).startswith(EVIDENCE_PREFIX)
        ],
        "files": [{"path": f["path"], "sha256": f["sha256"]} for f in present],
    }
    line = (
        f"⚠ publication #{intent['seq']} ({announced.get('kind')}) torn by a kill: "
        f"{', '.join(sorted(bad))} could not be published ({', '.join(sorted(set(bad.values())))})"
    )
    return workspace.append_entry(TORN, data, intent["actor"], {TIMELINE: timeline_line(line)})


def unfinished(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The head entry when it is a publication a kill interrupted."""
    return entries[-1] if entries and entries[-1]["kind"] == INTENT else None


def staged_paths(entry: dict[str, Any]) -> set[str]:
    """Every path an announced publication may have left: staged files and destinations."""
    files = entry["data"].get("files") or []
    return {str(f.get("staged")) for f in files} | {str(f.get("path")) for f in files}
