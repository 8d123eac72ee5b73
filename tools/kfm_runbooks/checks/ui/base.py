"""The UI runbooks' view of a running KFM system: its published state, its reference, probes.

`UiSystem.from_target(target)` wraps `checks.live.Live`: the published layer registry
(live/state/layers.json), time indexes (times/<layer>.json), tile sources
(tiles/<layer>/source.json), stories (stories.json) and the deployed UI release (ui.json),
the intended reference (live/config.json), and HTTP probes of the API (loopback only,
retried on 429 / 5xx, None when the service cannot be reached).

Reading is defensive: a state or config file that is missing, malformed or of the wrong
shape becomes a finding (`UI_STATE_UNREADABLE`, HOLD), never an exception; a layer id that
could escape its folder (`../x`) is reported (`UI_LAYER_ID_INVALID`) and never used as a
path. Light imports only (standard library): used inside kernels.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..._fs import replace_atomic
from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, Finding
from ..common import json as strict_json
from ..live import MAX_STATE_BYTES, Live, Response

LAYER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")  # the API's own route pattern
TILE = "/tiles/0/0/0"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES = 2
MAX_BACKOFF_S = 2.0


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and LAYER_ID.fullmatch(value) is not None


@dataclass
class Probe:
    """One HTTP answer, reduced to what the runbooks compare (never latencies)."""

    path: str
    status: int | None  # None: the service could not be reached
    body: bytes = b""
    content_type: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def describe(self) -> str:
        if self.status is None:
            return "unreachable"
        detail = self.json()
        error = detail.get("error") if isinstance(detail, dict) else None
        return f"HTTP {self.status}" + (f" ({error})" if isinstance(error, str) else "")


@dataclass
class UiSystem:
    live: Live
    sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_target(cls, target: Target) -> UiSystem:
        return cls(Live.from_target(target))

    # -- files --------------------------------------------------------------------------

    def read_state(self, name: str, default: Any = None) -> tuple[Any, Finding | None]:
        try:
            return self.live.read_state(name), None
        except FileNotFoundError:
            return default, Finding(
                "UI_STATE_UNREADABLE", f"state/{name}", "/", HOLD, "file missing"
            )
        except (OSError, ValueError) as exc:
            return default, Finding(
                "UI_STATE_UNREADABLE", f"state/{name}", "/", HOLD, type(exc).__name__
            )

    def write_state(self, name: str, value: Any) -> None:
        self.live.write_state(name, value)

    def reference(self) -> tuple[dict[str, Any], Finding | None]:
        try:
            value = strict_json.load_file(self.live.config_path, MAX_STATE_BYTES)
        except (OSError, ValueError) as exc:
            return {}, Finding("UI_STATE_UNREADABLE", "config.json", "/", HOLD, type(exc).__name__)
        if not isinstance(value, dict):
            return {}, Finding("UI_STATE_UNREADABLE", "config.json", "/", HOLD, "not an object")
        return value, None

    def _listed(self, name: str, key: str) -> tuple[list[dict[str, Any]], list[Finding]]:
        doc, problem = self.read_state(name, {})
        if problem:
            return [], [problem]
        items = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(items, list):
            return [], [Finding("UI_STATE_UNREADABLE", f"state/{name}", f"/{key}", HOLD, "no list")]
        return _entries(items, f"state/{name}", key)

    def registry(self) -> tuple[list[dict[str, Any]], list[Finding]]:
        """The published layer registry (live/state/layers.json), valid entries only."""
        return self._listed("layers.json", "layers")

    def stories(self) -> tuple[list[dict[str, Any]], list[Finding]]:
        return self._listed("stories.json", "stories")

    def intended(self, key: str) -> tuple[list[dict[str, Any]], list[Finding]]:
        """The intended `layers` / `stories` of the reference (live/config.json)."""
        reference, problem = self.reference()
        if problem:
            return [], [problem]
        items = reference.get(key)
        if not isinstance(items, list):
            return [], [Finding("UI_STATE_UNREADABLE", "config.json", f"/{key}", HOLD, "no list")]
        return _entries(items, "config.json", key)

    def tile_source(self, layer_id: str) -> tuple[str, dict[str, Any] | None]:
        """('present' | 'missing' | 'invalid', the source document)."""
        if not valid_id(layer_id):
            return "invalid", None
        path = self.live.state_dir / "tiles" / layer_id / "source.json"
        try:  # a link swapped in is refused (never followed): "invalid"
            value = strict_json.load_file(path, MAX_STATE_BYTES)
        except FileNotFoundError:
            return "missing", None
        except (OSError, ValueError):
            return "invalid", None
        if not isinstance(value, dict) or value.get("layer") not in (None, layer_id):
            return "invalid", None
        return "present", value

    def write_tile_source(self, layer_id: str, value: dict[str, Any]) -> None:
        if not valid_id(layer_id):
            raise ValueError(f"invalid layer id {layer_id!r}")
        folder = self.live.state_dir / "tiles" / layer_id
        folder.mkdir(parents=True, exist_ok=True)
        replace_atomic(
            folder / "source.json", (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
        )

    # -- HTTP -----------------------------------------------------------------------------

    def get(self, path: str, role: str | None = None) -> Probe:
        """GET on the API; 429 / 5xx are retried (the bucket refills), never hammered."""
        answer: Response | None = None
        for attempt in range(RETRIES + 1):
            try:
                answer = self.live.request(path, role=role, timeout=15)
            except (TargetError, urllib.error.URLError, OSError):
                return Probe(path, None)
            if answer.status not in RETRY_STATUSES or attempt == RETRIES:
                break
            wait = answer.headers.get("retry-after", "0.5")
            self.sleep(min(MAX_BACKOFF_S, float(wait) if _number(wait) else 0.5))
        assert answer is not None
        return Probe(path, answer.status, answer.body, answer.headers.get("content-type", ""))

    def role_for(self, sensitivity: str) -> str | None:
        """The least-privileged configured role that may read a sensitivity level."""
        reference, _ = self.reference()
        roles = reference.get("roles")
        if not isinstance(roles, dict):
            return None
        allowed = [
            (len(spec.get("layers", [])), bool(spec.get("admin")), str(name))
            for name, spec in roles.items()
            if isinstance(spec, dict) and sensitivity in (spec.get("layers") or [])
        ]
        return min(allowed)[2] if allowed else None

    def probe_layer(self, layer: dict[str, Any]) -> tuple[Probe, Probe]:
        """(descriptor, tile 0/0/0) of a layer, asked with the role allowed to read it."""
        role = self.role_for(str(layer.get("sensitivity")))
        base = f"/api/v1/layers/{layer['id']}"
        return self.get(base, role), self.get(base + TILE, role)

    def served_times(self, layer: dict[str, Any]) -> tuple[Probe, list[Any] | None]:
        probe = self.get(f"/api/v1/layers/{layer['id']}/times", self.role_for(layer["sensitivity"]))
        body = probe.json()
        times = body.get("times") if probe.ok and isinstance(body, dict) else None
        return probe, times if isinstance(times, list) else None


def intended_position(published: list[str], intended: list[str], item: str) -> int:
    """Where an intended item belongs: right after its nearest intended predecessor."""
    before = intended[: intended.index(item)] if item in intended else []
    for previous in reversed(before):
        if previous in published:
            return published.index(previous) + 1
    return 0


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _entries(
    items: list[Any], subject: str, key: str
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """Entries with a valid id (and, for layers, a sensitivity); others become findings."""
    invalid = "UI_LAYER_ID_INVALID" if key == "layers" else "UI_STORY_ID_INVALID"
    good: list[dict[str, Any]] = []
    problems: list[Finding] = []
    seen: set[str] = set()
    for index, entry in enumerate(items):
        where = f"/{key}/{index}"
        if not isinstance(entry, dict) or not valid_id(entry.get("id")):
            shown = entry.get("id") if isinstance(entry, dict) else type(entry).__name__
            problems.append(Finding(invalid, subject, where, BLOCKING, f"id {str(shown)[:60]!r}"))
            continue
        if key == "layers" and not isinstance(entry.get("sensitivity"), str):
            problems.append(
                Finding("UI_STATE_UNREADABLE", subject, where, BLOCKING, "no sensitivity")
            )
            continue
        if entry["id"] in seen:
            problems.append(
                Finding("UI_REGISTRY_DUPLICATE_ID", subject, where, BLOCKING, entry["id"])
            )
            continue
        seen.add(entry["id"])
        good.append(entry)
    return good, problems
