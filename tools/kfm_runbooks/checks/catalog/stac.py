"""STAC records: KFM's STAC trust profile, KFM's catalog trust extension, STAC core.

- KFM STAC profile (`kfm://profile/stac/kfm-profile-v1`): JSON Schema
  (kfm-profile-v1.schema.json) first; only a schema-valid item gets the profile's
  semantic rules (spec_hash identity, canonical lists, trust-class dependencies, state
  consistency, reference/link agreement). Codes are KFM's own (SPEC_HASH_MISMATCH,
  TRUST_CLASS_DEPENDENCY_MISMATCH, ...), so its fixture manifest reproduces.
- KFM catalog trust extension (`CatalogTrustExtension` payloads): schema findings and
  the semantic rules together (SPEC_HASH_MISMATCH, PROOF_REF_REQUIRED, ...).
- STAC core (Item / Collection / Catalog, 1.0.x and 1.1.x, pre-releases such as
  1.1.0-beta.1 included; any other version is HOLD, not judged): the spec's required fields
  and shapes, checked structurally (the official STAC JSON Schemas are remote; this
  runbook never fetches anything). Codes STAC_*.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import re
from pathlib import Path
from typing import Any

from .. import BLOCKING, HOLD, Finding
from ..common.jcs import CanonicalizationError, spec_hash
from .schema import SchemaUnavailable, schema_errors

KFM_PROFILE_URI = "kfm://profile/stac/kfm-profile-v1"
STAC_VERSIONS = frozenset({"1.0.0", "1.1.0"})
_JUDGED_VERSION = re.compile(r"1\.[01]\.\d+(-(alpha|beta|rc)\.?\d*)?")


def stac_version_judged(version: Any) -> bool:
    """STAC 1.0.x and 1.1.x, pre-releases included: versions whose rules are known here."""
    return isinstance(version, str) and bool(_JUDGED_VERSION.fullmatch(version))


KFM_LINK_ORDER = {"kfm:receipt": 0, "kfm:proof": 1, "kfm:release": 2}
REFERENCE_FIELDS = {
    "kfm:run_receipt_ref": "kfm:receipt",
    "kfm:proof_ref": "kfm:proof",
    "kfm:release_ref": "kfm:release",
}
# trust class -> (receipt, proof, release) references it requires (and only those)
TRUST_DEPENDENCIES = {
    "UNRESOLVED": (False, False, False),
    "CATALOG_ONLY": (False, False, False),
    "RECEIPT_BOUND": (True, False, False),
    "PROOF_BOUND": (True, True, False),
    "RELEASE_LINKED": (True, True, True),
}
GOVERNANCE_FLAGS = (
    "catalog_authorized",
    "promotion_authorized",
    "release_authorized",
    "publication_authorized",
    "public_use_allowed",
)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _finding(
    code: str, subject: str, field: str, message: str, severity: str = BLOCKING
) -> Finding:
    return Finding(code, subject, field, severity, message)


def _schema_findings(record: dict[str, Any], subject: str, schema: Path | None) -> list[Finding]:
    try:
        errors = schema_errors(schema, record)
    except SchemaUnavailable as exc:
        return [_finding("SCHEMA_UNAVAILABLE", subject, "/", f"cannot validate: {exc}", HOLD)]
    first: dict[str, Finding] = {}  # one finding per field, as KFM reports them
    for error in errors:
        first.setdefault(
            error.field, _finding("SCHEMA_INVALID", subject, error.field, _short(error))
        )
    return list(first.values())


def _short(error: Any) -> str:
    text = f"{error.keyword}: {error.message}"
    return text if len(text) <= 160 else text[:157] + "..."


def _canonical_strings(value: Any) -> bool:
    return (
        isinstance(value, list)
        and all(isinstance(item, str) for item in value)
        and value == sorted(set(value))
    )


def _hash_finding(
    subject: str, declared: Any, subject_doc: dict[str, Any], field: str
) -> list[Finding]:
    if not isinstance(declared, str):
        return []
    try:
        actual = spec_hash(subject_doc)
    except CanonicalizationError as exc:
        return [_finding("HASHING_UNAVAILABLE", subject, field, str(exc))]
    if actual != declared:
        return [
            _finding(
                "SPEC_HASH_MISMATCH",
                subject,
                field,
                f"declared {declared[:19]}…, content hashes to {actual[:19]}…",
            )
        ]
    return []


# --- KFM STAC trust profile ----------------------------------------------------------


def kfm_profile_findings(
    record: dict[str, Any], subject: str, schema: Path | None
) -> list[Finding]:
    """KFM STAC profile: schema, then (only if schema-valid) the profile's semantics."""
    found = _schema_findings(record, subject, schema)
    if found:
        return found
    props: dict[str, Any] = record["properties"]
    identity = copy.deepcopy(record)
    identity["properties"].pop("kfm:spec_hash", None)
    found += _hash_finding(
        subject, props.get("kfm:spec_hash"), identity, "/properties/kfm:spec_hash"
    )
    if not _canonical_strings(props.get("kfm:reason_codes")):
        found.append(
            _finding(
                "REASON_CODES_NOT_CANONICAL",
                subject,
                "/properties/kfm:reason_codes",
                "reason codes must be sorted and unique",
            )
        )
    if not _canonical_strings(record.get("stac_extensions")):
        found.append(
            _finding(
                "EXTENSIONS_NOT_CANONICAL",
                subject,
                "/stac_extensions",
                "stac_extensions must be sorted and unique",
            )
        )
    found += _trust_findings(props, subject)
    found += _link_findings(record, props, subject)
    return found


def _trust_findings(props: dict[str, Any], subject: str) -> list[Finding]:
    found: list[Finding] = []
    refs = [props.get(field) for field in REFERENCE_FIELDS]
    present = [ref for ref in refs if isinstance(ref, str)]
    if len(present) != len(set(present)):
        found.append(
            _finding(
                "REFERENCE_ROLE_COLLAPSE",
                subject,
                "/properties",
                "one reference serves two roles (e.g. a receipt cited as proof)",
            )
        )
    trust = props.get("kfm:trust_class")
    expected = TRUST_DEPENDENCIES.get(str(trust))
    actual = tuple(isinstance(ref, str) for ref in refs)
    if expected is not None and actual != expected:
        needs = [
            n for n, want in zip(("receipt", "proof", "release"), expected, strict=True) if want
        ]
        found.append(
            _finding(
                "TRUST_CLASS_DEPENDENCY_MISMATCH",
                subject,
                "/properties/kfm:trust_class",
                f"{trust} requires exactly: {', '.join(needs) or 'no references'}",
            )
        )
    catalog_state = props.get("kfm:catalog_state")
    if (trust == "UNRESOLVED" and catalog_state != "CANDIDATE") or (
        trust in {"CATALOG_ONLY", "PROOF_BOUND", "RELEASE_LINKED"} and catalog_state != "CATALOGED"
    ):
        found.append(
            _finding(
                "CATALOG_STATE_INCONSISTENT",
                subject,
                "/properties/kfm:catalog_state",
                f"{catalog_state} does not fit trust class {trust}",
            )
        )
    release_ref = props.get("kfm:release_ref")
    release_state = props.get("kfm:release_state")
    if (release_state == "RELEASE_LINKED") != isinstance(release_ref, str):
        found.append(
            _finding(
                "RELEASE_STATE_INCONSISTENT",
                subject,
                "/properties/kfm:release_state",
                "release state and release reference disagree",
            )
        )
    if props.get("kfm:publication_state") == "PUBLICATION_LINKED" and (
        not isinstance(release_ref, str) or release_state != "RELEASE_LINKED"
    ):
        found.append(
            _finding(
                "PUBLICATION_STATE_INCONSISTENT",
                subject,
                "/properties/kfm:publication_state",
                "publication linked without a linked release",
            )
        )
    return found


def _link_findings(record: dict[str, Any], props: dict[str, Any], subject: str) -> list[Finding]:
    found: list[Finding] = []
    links = [
        link
        for link in record.get("links", [])
        if isinstance(link, dict) and link.get("rel") in KFM_LINK_ORDER
    ]
    keys = [(KFM_LINK_ORDER[str(link["rel"])], str(link.get("href"))) for link in links]
    if keys != sorted(set(keys)):
        found.append(
            _finding(
                "KFM_LINKS_NOT_CANONICAL",
                subject,
                "/links",
                "kfm:receipt / kfm:proof / kfm:release links must be ordered and unique",
            )
        )
    by_rel: dict[str, list[str]] = {rel: [] for rel in KFM_LINK_ORDER}
    for link in links:
        if isinstance(link.get("href"), str):
            by_rel[str(link["rel"])].append(link["href"])
    for field, rel in REFERENCE_FIELDS.items():
        ref, hrefs = props.get(field), by_rel[rel]
        where = f"/properties/{field}"
        if isinstance(ref, str) and hrefs != [ref]:
            found.append(
                _finding(
                    "REFERENCE_LINK_MISMATCH", subject, where, f"no single {rel} link to {ref}"
                )
            )
        elif not isinstance(ref, str) and hrefs:
            found.append(
                _finding("REFERENCE_LINK_ORPHANED", subject, where, f"{rel} link without {field}")
            )
    return found


# --- KFM catalog trust extension -------------------------------------------------------


def trust_extension_findings(
    record: dict[str, Any], subject: str, schema: Path | None
) -> list[Finding]:
    """CatalogTrustExtension payload: schema findings plus the payload's semantic rules."""
    found = _schema_findings(record, subject, schema)
    identity = {k: v for k, v in record.items() if k != "spec_hash"}
    found += _hash_finding(subject, record.get("spec_hash"), identity, "/spec_hash")
    trust = record.get("kfm:trust_class")
    if trust in {"proof", "publication"} and not isinstance(record.get("kfm:proof_ref"), str):
        found.append(
            _finding(
                "PROOF_REF_REQUIRED",
                subject,
                "/kfm:proof_ref",
                f"trust class {trust} needs a proof",
            )
        )
    if record.get("kfm:source_role") == "candidate" and trust == "publication":
        found.append(
            _finding(
                "CANDIDATE_PUBLICATION_FORBIDDEN",
                subject,
                "/kfm:trust_class",
                "a candidate source cannot back a publication",
            )
        )
    governance = record.get("governance")
    if isinstance(governance, dict) and any(
        governance.get(flag) is not False for flag in GOVERNANCE_FLAGS
    ):
        granted = [flag for flag in GOVERNANCE_FLAGS if governance.get(flag) is not False]
        found.append(
            _finding(
                "GOVERNANCE_BOUNDARY_VIOLATION",
                subject,
                "/governance",
                f"a payload cannot grant authority: {', '.join(granted)}",
            )
        )
    return found


# --- STAC core ------------------------------------------------------------------------


def rfc3339(value: Any) -> bool:
    if not isinstance(value, str) or not _RFC3339.match(value):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00").replace("t", "T"))
    except ValueError:
        return False
    return True


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _bbox(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (4, 6)
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value
        )
    )


def stac_core_findings(record: dict[str, Any], subject: str) -> list[Finding]:
    """Required fields and shapes of a STAC 1.0/1.1 Item, Collection or Catalog."""
    found: list[Finding] = []

    def missing(field: str, what: str) -> None:
        found.append(_finding("STAC_FIELD_MISSING", subject, field, f"{what} is required"))

    def invalid(field: str, what: str) -> None:
        found.append(_finding("STAC_FIELD_INVALID", subject, field, what))

    kind = record.get("type")
    version = record.get("stac_version")
    if not stac_version_judged(version):
        found.append(
            _finding(
                "STAC_VERSION_UNSUPPORTED",
                subject,
                "/stac_version",
                f"stac_version {version!r} is not 1.0.x or 1.1.x: not judged here (HOLD)",
                HOLD,
            )
        )
    if not _text(record.get("id")):
        missing("/id", "a non-empty id")
    if kind in ("Collection", "Catalog") and not _text(record.get("description")):
        missing("/description", "a description")
    links = record.get("links")
    if not isinstance(links, list):
        missing("/links", "a links array")
    else:
        for index, link in enumerate(links):
            if not (isinstance(link, dict) and _text(link.get("rel")) and _text(link.get("href"))):
                invalid(f"/links/{index}", "a link needs rel and href")
    if kind == "Feature":
        _item_core(record, missing, invalid)
    elif kind == "Collection":
        _collection_core(record, missing, invalid)
    return found


def _item_core(record: dict[str, Any], missing: Any, invalid: Any) -> None:
    if "geometry" not in record:
        missing("/geometry", "geometry (a GeoJSON geometry or null)")
    else:
        geometry = record["geometry"]
        if geometry is not None and not (
            isinstance(geometry, dict) and _text(geometry.get("type")) and "coordinates" in geometry
        ):
            invalid("/geometry", "geometry must be a GeoJSON geometry or null")
        if geometry is not None and not _bbox(record.get("bbox")):
            missing("/bbox", "a bbox of 4 or 6 numbers (geometry is not null)")
    props = record.get("properties")
    if not isinstance(props, dict):
        missing("/properties", "a properties object")
        props = {}
    if "datetime" not in props:
        missing("/properties/datetime", "properties.datetime (a timestamp or null)")
    elif props["datetime"] is None:
        for bound in ("start_datetime", "end_datetime"):
            if not rfc3339(props.get(bound)):
                missing(f"/properties/{bound}", f"{bound} (datetime is null)")
    elif not rfc3339(props["datetime"]):
        invalid("/properties/datetime", "datetime must be RFC 3339 with a time zone")
    assets = record.get("assets")
    if not isinstance(assets, dict):
        missing("/assets", "an assets object")
    else:
        for name, asset in sorted(assets.items()):
            if not (isinstance(asset, dict) and _text(asset.get("href"))):
                invalid(f"/assets/{name}", "an asset needs an href")


def _collection_core(record: dict[str, Any], missing: Any, invalid: Any) -> None:
    if not _text(record.get("license")):
        missing("/license", "a license")
    extent = record.get("extent")
    if not isinstance(extent, dict):
        missing("/extent", "an extent with spatial and temporal parts")
        return
    bboxes = (
        (extent.get("spatial") or {}).get("bbox")
        if isinstance(extent.get("spatial"), dict)
        else None
    )
    if not (isinstance(bboxes, list) and bboxes and all(_bbox(b) for b in bboxes)):
        invalid("/extent/spatial/bbox", "spatial extent needs a list of bboxes")
    temporal = extent.get("temporal")
    intervals = temporal.get("interval") if isinstance(temporal, dict) else None
    if not (
        isinstance(intervals, list)
        and intervals
        and all(
            isinstance(i, list) and len(i) == 2 and all(v is None or rfc3339(v) for v in i)
            for i in intervals
        )
    ):
        invalid("/extent/temporal/interval", "temporal extent needs [[start|null, end|null], …]")
