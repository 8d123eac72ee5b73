"""The UI runbooks' view of a KFM system: what its public API serves, its reference, its admin.

`UiSystem.from_target(target)` works only from what the target describes (Service):

- what is *published* comes from the system's public API (`api.url`): the layer listing,
  each layer's descriptor, tile and time steps, each story (routes in `ROUTES`, overridable
  with `ui.routes`), asked with the role `ui.read_roles` maps a layer's sensitivity to;
- what is *intended* (the reference) comes from KFM's own files named in the target:
  `ui.layer_registry` (the layer registry), `ui.stories` (the story definitions) and
  `ui.citations` (the documents story nodes may cite, besides the API's catalog items).
  A reference the target does not name is a HOLD finding naming the key, never a PASS;
- changes go through `svc.admin(op, args)` (the interface the target names); when it names
  none, the runbook records a manual action with the exact instruction.

Reading is defensive: a reference file that is missing, malformed or of the wrong shape
becomes a finding (`UI_REFERENCE_UNREADABLE`, HOLD), never an exception; an id that could
escape a route (`../x`) is reported (`UI_LAYER_ID_INVALID`) and never put in a URL. Light
imports only (standard library; PyYAML for a YAML reference): used inside kernels.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import TargetError
from ...target import Target
from .. import BLOCKING, HOLD, Finding
from ..common import json as strict_json
from ..common.files import FileProblemError, read_regular
from ..common.service import NoAdminInterfaceError, Service

LAYER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")  # KFM's route pattern for ids
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRIES = 2
MAX_BACKOFF_S = 2.0
MAX_REFERENCE_BYTES = 16 << 20
# KFM's public routes ({id}: a layer or story id); `ui.routes` overrides any of them.
ROUTES = {
    "layers": "/api/v1/layers",
    "layer": "/api/v1/layers/{id}",
    "tile": "/api/v1/layers/{id}/tiles/0/0/0",
    "times": "/api/v1/layers/{id}/times",
    "story": "/api/v1/stories/{id}",
    "catalog": "/api/v1/catalog/items",
}
REFERENCES = {
    "layer_registry": ("layers", "the intended layer registry"),
    "stories": ("stories", "the intended stories"),
    "citations": ("citations", "the documents story nodes may cite"),
}


def valid_id(value: Any) -> bool:
    return isinstance(value, str) and LAYER_ID.fullmatch(value) is not None


@dataclass
class Probe:
    """One HTTP answer, reduced to what the runbooks compare (never latencies)."""

    path: str
    status: int | None  # None: the service could not be reached (see `error`)
    body: bytes = b""
    content_type: str = ""
    error: str = ""

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
            return f"unreachable ({self.error})" if self.error else "unreachable"
        detail = self.json()
        error = detail.get("error") if isinstance(detail, dict) else None
        return f"HTTP {self.status}" + (f" ({error})" if isinstance(error, str) else "")


@dataclass
class UiSystem:
    svc: Service
    sleep: Callable[[float], None] = time.sleep
    _cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_target(cls, target: Target) -> UiSystem:
        return cls(Service.from_target(target))

    @property
    def section(self) -> dict[str, Any]:
        return self.svc.section("ui")

    def why_unreachable(self) -> str:
        """Why the last request could not be made (refused host, connection error…)."""
        return str(self._cache.get("unreachable") or self.describe_api())

    def describe_api(self) -> str:
        try:
            return self.svc.url("api")
        except TargetError as exc:
            return f"not described ({exc})"

    # -- routes ---------------------------------------------------------------------------

    def route(self, name: str, item_id: str | None = None) -> str:
        routes = self.section.get("routes")
        chosen = routes.get(name) if isinstance(routes, dict) else None
        template = chosen if isinstance(chosen, str) and chosen.startswith("/") else ROUTES[name]
        if item_id is None:
            return template
        if not valid_id(item_id):
            raise ValueError(f"invalid id {item_id!r}")
        return template.replace("{id}", urllib.parse.quote(item_id, safe=""))

    # -- the reference (KFM's own files named in the target) -----------------------------

    def reference_path(self, key: str) -> Path | None:
        """`ui.<key>` against the target's folder, made absolute without following links
        (Service.path resolves them: a link planted in place of the file would be read)."""
        value = self.section.get(key)
        if not isinstance(value, str) or not value:
            return None
        return Path(os.path.normpath(self.svc.target.base / Path(value).expanduser()))

    def reference(self, key: str) -> tuple[Any, Finding | None]:
        """The parsed reference file `ui.<key>` (JSON or YAML), or a HOLD finding."""
        if key in self._cache:
            cached: tuple[Any, Finding | None] = self._cache[key]
            return cached
        result = self._read_reference(key)
        self._cache[key] = result
        return result

    def _read_reference(self, key: str) -> tuple[Any, Finding | None]:
        what = REFERENCES[key][1]
        path = self.reference_path(key)
        if path is None:
            return None, Finding(
                "UI_REFERENCE_MISSING",
                f"ui.{key}",
                "/",
                HOLD,
                f"the target names no {what} (ui.{key}): nothing to compare against",
            )
        subject = f"ui.{key}"
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                value = yaml.safe_load(read_regular(path, MAX_REFERENCE_BYTES))
            else:
                value = strict_json.load_file(path, MAX_REFERENCE_BYTES)
        except FileProblemError as exc:
            return None, Finding("UI_REFERENCE_UNREADABLE", subject, "/", HOLD, str(exc)[:160])
        except (OSError, ValueError) as exc:
            return None, Finding(
                "UI_REFERENCE_UNREADABLE", subject, "/", HOLD, f"{path.name}: {type(exc).__name__}"
            )
        except Exception as exc:  # a YAML error: the reference is unusable, not the system
            return None, Finding(
                "UI_REFERENCE_UNREADABLE", subject, "/", HOLD, f"{path.name}: {type(exc).__name__}"
            )
        return value, None

    def _reference_list(self, key: str) -> tuple[list[Any] | None, list[Finding]]:
        value, problem = self.reference(key)
        if problem is not None:
            return None, [problem]
        item_key = REFERENCES[key][0]
        items = value.get(item_key) if isinstance(value, dict) else value
        if not isinstance(items, list):
            return None, [
                Finding(
                    "UI_REFERENCE_UNREADABLE",
                    f"ui.{key}",
                    f"/{item_key}",
                    HOLD,
                    f"no `{item_key}` list in {self.reference_path(key)}",
                )
            ]
        return items, []

    def intended(self, kind: str) -> tuple[list[dict[str, Any]] | None, list[Finding]]:
        """Intended `layers` / `stories` (None: no usable reference; findings say why)."""
        key = "layer_registry" if kind == "layers" else "stories"
        items, problems = self._reference_list(key)
        if items is None:
            return None, problems
        good, found = _entries(items, f"ui.{key}", kind)
        return good, problems + found

    def known_citations(self) -> tuple[set[str] | None, list[Finding]]:
        """Document ids named by `ui.citations` (None when it names none / is unreadable)."""
        items, problems = self._reference_list("citations")
        if items is None:
            return None, problems
        ids = {str(i.get("id")) if isinstance(i, dict) else str(i) for i in items}
        return ids, []

    # -- HTTP -----------------------------------------------------------------------------

    def get(self, path: str, role: str | None = None) -> Probe:
        """GET on the API; 429 / 5xx are retried (the bucket refills), never hammered."""
        answer = None
        for attempt in range(RETRIES + 1):
            try:
                answer = self.svc.request(path, role=role, timeout=15)
            except TargetError as exc:
                self._cache["unreachable"] = str(exc).splitlines()[0][:200]
                return Probe(path, None, error=self._cache["unreachable"])
            except OSError as exc:
                self._cache["unreachable"] = f"{self.describe_api()}: {type(exc).__name__}"
                return Probe(path, None, error=self._cache["unreachable"])
            if answer.status not in RETRY_STATUSES or attempt == RETRIES:
                break
            wait = answer.headers.get("retry-after", "0.5")
            self.sleep(min(MAX_BACKOFF_S, float(wait) if _number(wait) else 0.5))
        assert answer is not None
        return Probe(path, answer.status, answer.body, answer.headers.get("content-type", ""))

    def role_for(self, sensitivity: str) -> str | None:
        """The role `ui.read_roles` maps a sensitivity to (None: asked without a token)."""
        roles = self.section.get("read_roles")
        role = roles.get(sensitivity) if isinstance(roles, dict) else None
        return role if isinstance(role, str) and role else None

    def listing_roles(self) -> list[str | None]:
        roles = self.section.get("read_roles")
        values = roles.values() if isinstance(roles, dict) else []
        named: list[str | None] = [*sorted({r for r in values if isinstance(r, str) and r})]
        return named or [None]

    def published(self) -> tuple[list[dict[str, Any]] | None, list[Finding]]:
        """The layers the API publishes (GET layers, asked with every reading role)."""
        if "published" in self._cache:
            cached: tuple[list[dict[str, Any]] | None, list[Finding]] = self._cache["published"]
            return cached
        merged: list[dict[str, Any]] = []
        findings: list[Finding] = []
        reached = False
        for role in self.listing_roles():
            probe = self.get(self.route("layers"), role)
            if probe.status is None:
                self._cache["published"] = (None, [])
                return None, []
            reached = True
            body = probe.json()
            listed = body.get("layers") if isinstance(body, dict) else body
            if not probe.ok or not isinstance(listed, list):
                findings.append(
                    Finding(
                        "UI_LISTING_UNAVAILABLE",
                        self.route("layers"),
                        "/",
                        BLOCKING,
                        f"{probe.describe()} as {role or 'anonymous'}: no layer list",
                    )
                )
                continue
            good, problems = _entries(listed, self.route("layers"), "layers")
            findings += problems
            known = {x["id"] for x in merged}
            if len(good) > len(merged):  # the widest view sets the order
                merged = good + [x for x in merged if x["id"] not in {g["id"] for g in good}]
            else:
                merged += [x for x in good if x["id"] not in known]
        result = (merged if reached else None, sorted(set(findings)))
        self._cache["published"] = result
        return result

    def forget(self) -> None:
        """Drop what was read (after a change, or to scan again)."""
        self._cache.clear()

    def probe_layer(self, layer: dict[str, Any]) -> tuple[Probe, Probe]:
        """(descriptor, tile) of a layer, asked with the role allowed to read it."""
        role = self.role_for(str(layer.get("sensitivity")))
        return (
            self.get(self.route("layer", layer["id"]), role),
            self.get(self.route("tile", layer["id"]), role),
        )

    def served_times(self, layer: dict[str, Any]) -> tuple[Probe, list[Any] | None]:
        probe = self.get(
            self.route("times", layer["id"]), self.role_for(str(layer.get("sensitivity")))
        )
        body = probe.json()
        times = body.get("times") if probe.ok and isinstance(body, dict) else None
        return probe, times if isinstance(times, list) else None

    def served_stories(
        self,
    ) -> tuple[list[dict[str, Any]] | None, dict[str, Probe], list[Finding]]:
        """(intended stories, the API's answer per story id, findings).

        The API lists no stories: the ones to ask for are those of the reference
        (`ui.stories`); None when the target names none (findings say so)."""
        intended, findings = self.intended("stories")
        answers: dict[str, Probe] = {}
        for story in intended or []:
            answers[story["id"]] = self.get(self.route("story", story["id"]))
        return intended, answers, findings

    # -- acting on the system --------------------------------------------------------------

    def admin(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """One admin operation through the interface the target names (see Service.admin)."""
        result = self.svc.admin(op, args)
        self.forget()
        return result

    def can_act(self) -> bool:
        """Whether the target names an admin interface (else: manual actions)."""
        admin = self.svc.section("admin")
        return bool(admin.get("command"))


NO_ADMIN = "the target names no admin interface (admin.command)"  # a manual action's reason


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
                Finding("UI_LAYER_SENSITIVITY_MISSING", subject, where, BLOCKING, entry["id"])
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


__all__ = [
    "ROUTES",
    "NoAdminInterfaceError",
    "Probe",
    "UiSystem",
    "intended_position",
    "valid_id",
]
