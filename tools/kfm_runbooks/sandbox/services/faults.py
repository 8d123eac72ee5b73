"""The live sandbox's switchable faults: each breaks real state of the running system.

Switching a fault on changes what a bad deploy or an outage would change — a feature flag,
the authorization config, the retrieval index, the published layer registry's tile
sources, a story, the deployed UI release — in `<sandbox>/live/state/`, which the API
server reads on every request; switching it off restores the intended state from
live/config.json. Two faults act outside the files (the supervisor applies them):
`slow-query` drops the spatial index in PostgreSQL, `abusive-client` starts a real client
that floods the API. Three infrastructure faults act through live/infra.py:
`disk-pressure` fills the sandbox's own small data volume, `cert-expiry` installs a
certificate expiring in 3 days on the HTTPS listener, `backup-failure` points the backup
job at an unmounted folder (its run fails, the last good backup is 30 h old). Which faults
are on is recorded in live/faults.json.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..._fs import replace_atomic
from ...errors import InputError

FAULTS: dict[str, str] = {
    "5xx-burst": "a bad feature flag (new_serializer) makes every 3rd /api request fail with 500",
    "slow-query": "the spatial index on observations is dropped: bbox searches seq-scan",
    "auth-regression": "role enforcement is off: the public token reads restricted layers",
    "abusive-client": "a client floods the API (hundreds of requests a second, many 429s)",
    "missing-citations": "Focus Mode answers lose their citations",
    "injected-prompt": "the Focus Mode input gate is off: injection attempts get answered",
    "retrieval-outage": "the Focus Mode retrieval index is gone: answers fail (503)",
    "eval-drift": "the retrieval index was rebuilt badly: evaluation questions cite wrong data",
    "layer-registry-mismatch": "the registry lists a layer whose tile source is missing (404)",
    "timeline-desync": "a time-enabled layer serves time steps that disagree with its registry",
    "broken-story-node": "a story node points to a layer that does not exist",
    "inaccessible-control": "UI release v3 is deployed: critical controls lose names and focus",
    "disk-pressure": "rotated logs and leaked temp files fill the sandbox's data volume (tmpfs)",
    "cert-expiry": "the HTTPS listener's certificate is replaced by one expiring in 3 days",
    "backup-failure": "the backup job writes to an unmounted volume: runs fail, last good is stale",
}
EXTERNAL = frozenset(
    {"slow-query", "abusive-client", "disk-pressure", "cert-expiry", "backup-failure"}
)


def faults_path(folder: Path) -> Path:
    return folder / "live" / "faults.json"


def active(folder: Path) -> set[str]:
    try:
        return set(json.loads(faults_path(folder).read_text()).get("active", []))
    except (OSError, ValueError):
        return set()


def _reference(folder: Path) -> dict[str, Any]:
    value: dict[str, Any] = json.loads((folder / "live" / "config.json").read_text())
    return value


def _edit(path: Path, change: Callable[[Any], Any]) -> None:
    value = json.loads(path.read_text()) if path.exists() else {}
    replace_atomic(path, (json.dumps(change(value), indent=2, sort_keys=True) + "\n").encode())


def _flag(name: str, bad: bool) -> Callable[[Path, bool], None]:
    def apply(folder: Path, on: bool) -> None:
        good = _reference(folder)["flags"][name]
        _edit(folder / "live/state/flags.json", lambda f: {**f, name: bad if on else good})

    return apply


def _authz(folder: Path, on: bool) -> None:
    _edit(folder / "live/state/authz.json", lambda a: {**a, "enforce_roles": not on})


def _index(kind: str) -> Callable[[Path, bool], None]:
    def apply(folder: Path, on: bool) -> None:
        from .focus import build_index

        path = folder / "live/state/focus_index.json"
        corpus = _reference(folder)["focus"]["corpus"]
        if on and kind == "outage":
            path.unlink(missing_ok=True)
            return
        weights = "inverted" if on and kind == "drift" else "overlap"
        replace_atomic(
            path,
            (json.dumps(build_index(corpus, weights), indent=2, sort_keys=True) + "\n").encode(),
        )

    return apply


def _tiles(folder: Path, on: bool) -> None:
    source = folder / "live/state/tiles/streams"
    if on:
        shutil.rmtree(source, ignore_errors=True)
    else:
        source.mkdir(parents=True, exist_ok=True)
        replace_atomic(
            source / "source.json",
            (
                json.dumps(
                    {"format": "mvt", "layer": "streams", "zooms": [0, 14]},
                    indent=2,
                    sort_keys=True,
                )
                + "\n"
            ).encode(),
        )


def _times(folder: Path, on: bool) -> None:
    good = next(
        layer for layer in _reference(folder)["layers"] if layer["id"] == "drought-monitor"
    )["time"]["values"]
    bad = [v.replace("-01T", "-15T") for v in good[1:]] + [good[0]]
    _edit(
        folder / "live/state/times/drought-monitor.json",
        lambda t: {**t, "values": bad if on else good},
    )


def _story(folder: Path, on: bool) -> None:
    def change(doc: dict[str, Any]) -> dict[str, Any]:
        for story in doc.get("stories", []):
            for node in story.get("nodes", []):
                if node.get("id") == "spring":
                    node["layer"] = "drought-monitor-v0" if on else "drought-monitor"
        return doc

    _edit(folder / "live/state/stories.json", change)


def _ui(folder: Path, on: bool) -> None:
    good = _reference(folder)["ui"]
    _edit(
        folder / "live/state/ui.json",
        lambda u: {"release": "v3", "previous": good["release"]} if on else dict(good),
    )


APPLY: dict[str, Callable[[Path, bool], None]] = {
    "5xx-burst": _flag("new_serializer", True),
    "auth-regression": _authz,
    "missing-citations": _flag("citations_required", False),
    "injected-prompt": _flag("input_gate_enforced", False),
    "retrieval-outage": _index("outage"),
    "eval-drift": _index("drift"),
    "layer-registry-mismatch": _tiles,
    "timeline-desync": _times,
    "broken-story-node": _story,
    "inaccessible-control": _ui,
}


def set_fault(folder: Path, name: str, on: bool) -> set[str]:
    """Record the fault and apply its effect on the state files (not the external ones)."""
    if name not in FAULTS:
        raise InputError(f"unknown fault {name!r}: one of {', '.join(sorted(FAULTS))}")
    if name in APPLY:
        APPLY[name](folder, on)
    current = active(folder)
    current = current | {name} if on else current - {name}
    replace_atomic(
        faults_path(folder), (json.dumps({"active": sorted(current)}, indent=2) + "\n").encode()
    )
    return current
