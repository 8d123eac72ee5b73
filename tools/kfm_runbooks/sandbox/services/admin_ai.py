"""The sandbox admin command's Focus Mode ops (JSON in, JSON out).

`focus_rebuild_index` rebuilds the retrieval index from the sandbox's corpus (the
operators' "reindex" job) and returns the previous index's bytes so the change can be
undone exactly; `focus_restore_index` puts given bytes back (absent: removes the index).
The admin command (services/admin.py) imports `OPS`; each op is `op(folder, args) -> dict`
with `folder` the sandbox's folder.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic
from .focus import build_index

INDEX = "live/state/focus_index.json"


def _corpus(folder: Path) -> list[dict[str, Any]]:
    config = json.loads((folder / "live" / "config.json").read_text(encoding="utf-8"))
    return list(config["focus"]["corpus"])


def rebuild_index(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    path = folder / INDEX
    previous = path.read_bytes() if path.is_file() else None
    data = (json.dumps(build_index(_corpus(folder)), indent=2, sort_keys=True) + "\n").encode()
    replace_atomic(path, data)
    return {
        "rebuilt": INDEX,
        "written_sha256": hashlib.sha256(data).hexdigest(),
        "previous_b64": None if previous is None else base64.b64encode(previous).decode(),
        "previous_sha256": None if previous is None else hashlib.sha256(previous).hexdigest(),
    }


def restore_index(folder: Path, args: dict[str, Any]) -> dict[str, Any]:
    path = folder / INDEX
    encoded = args.get("previous_b64")
    if encoded is None:
        path.unlink(missing_ok=True)
        return {"restored": "absent (the index did not exist before)"}
    data = base64.b64decode(str(encoded))
    expected = args.get("previous_sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise ValueError("the previous index does not match its sha256: not restored")
    replace_atomic(path, data)
    return {"restored_sha256": hashlib.sha256(data).hexdigest()}


OPS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {
    "focus_rebuild_index": rebuild_index,
    "focus_restore_index": restore_index,
}
