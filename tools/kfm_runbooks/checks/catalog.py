"""STAC catalog health: records, links, asset checksums; reversible quarantine.

Implements KFM's catalog-health profile (`kfm.catalog-health.stac-item.v1`) with its
finding codes, so that its fixtures' verdicts reproduce: CAT_ASSET_DIGEST_MISMATCH,
CAT_ASSET_PATH_ESCAPE, CAT_ASSET_REMOTE_UNVERIFIED (HOLD while the network is denied),
CAT_STAC_LICENSE_MISSING, ... plus catalog-walk codes of our own (CAT_LINK_BROKEN,
CAT_LINK_PATH_ESCAPE) for catalogs whose items are reached through links.

Asset hrefs resolve in one of two ways:
- `asset_root` set (KFM fixtures): relative to that folder; any `..`, absolute path or
  symlink is refused before the filesystem is touched.
- otherwise (plain STAC): relative to the item file, and must stay inside the catalog's
  folder.
Paths outside the allowed folder are never opened.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._fs import create_new, replace_atomic, sha256_file
from .._time import now_iso
from ..target import Target
from . import BLOCKING, HOLD, Finding, strict_json, undoable, verdict

MAX_RECORD_BYTES = 1_048_576
SHA256_CHECKSUM_RE = re.compile(r"sha256:[0-9a-f]{64}")
REQUIRED_RELS = frozenset({"derived_from", "checksum", "commit", "manifest_uri"})
ERROR_CODES = frozenset(
    {
        "CAT_FILE_NOT_FOUND",
        "CAT_FILE_READ_ERROR",
        "CAT_FILE_TOO_LARGE",
        "CAT_INPUT_SYMLINK_DENIED",
        "CAT_JSON_COMPLEXITY_LIMIT",
        "CAT_JSON_DUPLICATE_KEY",
        "CAT_JSON_INVALID",
        "CAT_JSON_NONFINITE_NUMBER",
        "CAT_JSON_NOT_UTF8",
        "CAT_ROOT_NOT_OBJECT",
    }
)
# Codes that mean "the bytes the catalog promises are not the bytes we have".
INTEGRITY_CODES = frozenset(
    {"CAT_ASSET_DIGEST_MISMATCH", "CAT_ASSET_SIZE_MISMATCH", "CAT_ASSET_READ_ERROR"}
)
# Codes that mean "the catalog points somewhere it must not, or nowhere".
LINK_CODES = frozenset(
    {
        "CAT_ASSET_NOT_FOUND",
        "CAT_ASSET_PATH_ESCAPE",
        "CAT_ASSET_SYMLINK_DENIED",
        "CAT_ASSET_HREF_INVALID",
        "CAT_LINK_BROKEN",
        "CAT_LINK_PATH_ESCAPE",
    }
)
HeadProbe = Callable[[str], tuple[int, dict[str, str]]]


@dataclass(frozen=True)
class CatalogConfig:
    """Where a catalog lives, read from the target's `catalog` section."""

    base: Path  # the folder nothing may escape
    root: Path | None  # STAC root catalog.json, walked through its links
    items: tuple[Path, ...]  # or: folders / files of STAC items
    asset_root: Path | None  # KFM mode: relative hrefs resolve here
    quarantine: Path
    network: str = "deny"
    allowed_hosts: frozenset[str] = frozenset()

    @classmethod
    def from_target(cls, target: Target) -> CatalogConfig:
        section = target.section("catalog")
        root = target.resolve("catalog", "root", required=False)
        items = tuple(target.resolve_many("catalog", "items"))
        if root is None and not items:
            from ..errors import TargetError

            raise TargetError(f"target {target.path}: catalog needs 'root' or 'items'")
        asset_root = target.resolve("catalog", "asset_root", required=False)
        base = root.parent if root else (asset_root or target.base)
        quarantine = target.resolve("catalog", "quarantine", required=False)
        hosts = section.get("allowed_hosts") or []
        return cls(
            base=base,
            root=root,
            items=items,
            asset_root=asset_root,
            quarantine=quarantine or base / "quarantine",
            network=target.network,
            allowed_hosts=frozenset(str(h).lower().rstrip(".") for h in hosts),
        )


@dataclass
class ItemReport:
    """The health of one STAC item: KFM's outcome and findings for it."""

    file: str  # relative to the catalog base
    item_id: str | None
    findings: list[Finding] = field(default_factory=list)
    assets_total: int = 0
    assets_verified: int = 0
    assets_embargoed: int = 0
    assets_held: int = 0

    @property
    def outcome(self) -> str:
        return verdict(self.findings, ERROR_CODES)

    @property
    def codes(self) -> list[str]:
        return sorted({item.code for item in self.findings})

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "item_id": self.item_id,
            "outcome": self.outcome,
            "codes": self.codes,
            "assets_total": self.assets_total,
            "assets_verified": self.assets_verified,
            "assets_embargoed": self.assets_embargoed,
            "assets_held": self.assets_held,
        }


# --- reading ---------------------------------------------------------------------------


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Strict JSON read: (object, None) or (None, error code). Symlinks are refused."""
    try:
        if path.is_symlink():
            return None, "CAT_INPUT_SYMLINK_DENIED"
        if not path.is_file():
            return None, "CAT_FILE_NOT_FOUND"
        if path.stat().st_size > MAX_RECORD_BYTES:
            return None, "CAT_FILE_TOO_LARGE"
        data = path.read_bytes()
    except OSError:
        return None, "CAT_FILE_READ_ERROR"
    value, kind = strict_json.parse(data)
    if kind == "TOO_DEEP" or (kind is None and not strict_json.within_limits(value)):
        return None, "CAT_JSON_COMPLEXITY_LIMIT"
    if kind is not None:
        return None, f"CAT_JSON_{kind}"
    if not isinstance(value, dict):
        return None, "CAT_ROOT_NOT_OBJECT"
    return value, None


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _string_list(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(_text(item) for item in value)
        and len(value) == len(set(value))
    )


def _public_host(host: str | None) -> bool:
    if not host:
        return False
    host = host.rstrip(".").lower()
    if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return address.is_global


def _safe_href(value: Any) -> bool:
    """Hrefs a catalog may carry: relative paths, https to public hosts, urn/git/sha256."""
    if not _text(value) or any(ord(char) < 32 for char in value):
        return False
    parts = urllib.parse.urlsplit(value)
    if parts.username or parts.password:
        return False
    if not parts.scheme:
        return not value.startswith(("/", "\\"))
    if parts.scheme.lower() == "https":
        return _public_host(parts.hostname)
    return parts.scheme.lower() in {"urn", "git", "sha256"}


def _bbox_ok(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) in (4, 6)
        and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
    )


# --- record rules ----------------------------------------------------------------------


def record_findings(record: dict[str, Any], subject: str) -> list[Finding]:
    """KFM profile rules on the item record itself (governance, provenance rels)."""
    found: list[Finding] = []

    def block(code: str, where: str, message: str) -> None:
        found.append(Finding(code, subject, where, BLOCKING, message))

    properties = record.get("properties") if isinstance(record.get("properties"), dict) else {}
    assert isinstance(properties, dict)
    links = record.get("links") if isinstance(record.get("links"), list) else []
    assert isinstance(links, list)
    assets = record.get("assets") if isinstance(record.get("assets"), dict) else {}
    if record.get("type") != "Feature":
        block("CAT_STAC_TYPE_INVALID", "/type", "type must be 'Feature'")
    if not _text(record.get("stac_version")):
        block("CAT_STAC_VERSION_MISSING", "/stac_version", "stac_version missing")
    if not _text(record.get("id")):
        block("CAT_STAC_ID_MISSING", "/id", "id missing")
    if not isinstance(record.get("geometry"), dict) or not _bbox_ok(record.get("bbox")):
        block("CAT_STAC_SPATIAL_INVALID", "/geometry", "geometry or bbox missing/invalid")
    has_time = _text(properties.get("datetime")) or (
        _text(properties.get("start_datetime")) and _text(properties.get("end_datetime"))
    )
    if not has_time:
        block("CAT_STAC_TIME_MISSING", "/properties", "no datetime or start/end range")
    if not (_text(properties.get("created")) and _text(properties.get("updated"))):
        block("CAT_STAC_TIMESTAMP_MISSING", "/properties", "created/updated missing")
    if not _text(record.get("license")):
        block("CAT_STAC_LICENSE_MISSING", "/license", "license missing")
    providers = record.get("providers")
    if (
        not isinstance(providers, list)
        or not providers
        or any(
            not isinstance(p, dict) or not _text(p.get("name")) or not _string_list(p.get("roles"))
            for p in providers
        )
    ):
        block("CAT_STAC_PROVIDERS_MISSING", "/providers", "providers missing or incomplete")
    if not links:
        block("CAT_STAC_LINKS_INVALID", "/links", "no links")
    rels: set[str] = set()
    for index, link in enumerate(links):
        if isinstance(link, dict) and _text(link.get("rel")) and _safe_href(link.get("href")):
            rels.add(str(link["rel"]))
        else:
            block("CAT_STAC_LINK_INVALID", f"/links/{index}", "link without rel or safe href")
    missing = sorted(REQUIRED_RELS - rels)
    if missing:
        block(
            "CAT_STAC_PROVENANCE_REL_MISSING",
            "/links",
            f"provenance links missing: {', '.join(missing)}",
        )
    if not assets:
        block("CAT_STAC_ASSETS_INVALID", "/assets", "no assets")
    return found


# --- asset rules -----------------------------------------------------------------------


def resolve_local_asset(
    href: str, *, item_dir: Path, config: CatalogConfig
) -> tuple[Path | None, str | None]:
    """Where a relative asset href points, or the code that forbids following it.

    The containment decision is made on the text first; the filesystem is consulted only
    for paths already known to stay inside the allowed folder.
    """
    parts = urllib.parse.urlsplit(href)
    if parts.scheme or parts.netloc or parts.query or parts.fragment:
        return None, "CAT_ASSET_HREF_INVALID"
    raw = urllib.parse.unquote(parts.path)
    if not raw or raw.startswith(("/", "\\")) or "\x00" in raw:
        return None, "CAT_ASSET_PATH_ESCAPE"
    if config.asset_root is not None:
        if ".." in Path(raw).parts:
            return None, "CAT_ASSET_PATH_ESCAPE"
        start, boundary = config.asset_root, config.asset_root
    else:
        start, boundary = item_dir, config.base
    # Lexical containment before any I/O: normpath collapses `..` without touching disk.
    candidate = Path(os.path.normpath(start / raw))
    boundary_norm = Path(os.path.normpath(boundary))
    if candidate != boundary_norm and boundary_norm not in candidate.parents:
        return None, "CAT_ASSET_PATH_ESCAPE"
    # Now walk the components inside the boundary, refusing symlinks.
    current = boundary_norm
    for part in candidate.relative_to(boundary_norm).parts:
        current = current / part
        if current.is_symlink():
            return None, "CAT_ASSET_SYMLINK_DENIED"
    if not candidate.is_file():
        return None, "CAT_ASSET_NOT_FOUND"
    return candidate, None


def _head_probe(url: str) -> tuple[int, dict[str, str]]:  # pragma: no cover - network
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - https only, checked
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return int(response.status), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return int(error.code), {}
    except OSError:
        return 0, {}


def asset_findings(
    record: dict[str, Any],
    *,
    item_path: Path,
    subject: str,
    config: CatalogConfig,
    report: ItemReport,
    head_probe: HeadProbe = _head_probe,
) -> list[Finding]:
    found: list[Finding] = []
    links = record.get("links") if isinstance(record.get("links"), list) else []
    assert isinstance(links, list)
    has_via = any(
        isinstance(link, dict) and link.get("rel") == "via" and _safe_href(link.get("href"))
        for link in links
    )
    assets = record.get("assets") if isinstance(record.get("assets"), dict) else {}
    assert isinstance(assets, dict)
    for key in sorted(assets):
        asset = assets[key]
        where = f"/assets/{key}"
        report.assets_total += 1

        def add(code: str, message: str, severity: str = BLOCKING, where: str = where) -> None:
            found.append(Finding(code, subject, where, severity, message))

        if not isinstance(asset, dict):
            add("CAT_ASSET_DESCRIPTOR_INVALID", "asset is not an object")
            continue
        href, roles = asset.get("href"), asset.get("roles")
        checksum, size = asset.get("file:checksum"), asset.get("file:size")
        if not (
            _safe_href(href)
            and _text(asset.get("type"))
            and _string_list(roles)
            and _text(asset.get("title"))
            and isinstance(checksum, str)
            and SHA256_CHECKSUM_RE.fullmatch(checksum)
            and isinstance(size, int)
            and not isinstance(size, bool)
            and size >= 0
        ):
            add(
                "CAT_ASSET_DESCRIPTOR_INVALID",
                "asset needs a safe href, type, title, roles, file:checksum, file:size",
            )
            continue
        assert isinstance(href, str) and isinstance(roles, list) and isinstance(size, int)
        scheme = urllib.parse.urlsplit(href).scheme.lower()
        if scheme == "https":
            if "embargoed" in roles:
                report.assets_embargoed += 1
                if not has_via:
                    add("CAT_ASSET_EMBARGO_VIA_MISSING", "embargoed asset without a 'via' link")
                continue
            host = (urllib.parse.urlsplit(href).hostname or "").rstrip(".").lower()
            if config.network != "head":
                report.assets_held += 1
                add(
                    "CAT_ASSET_REMOTE_UNVERIFIED",
                    f"remote asset {href} not verified: network is denied (HOLD, not PASS)",
                    HOLD,
                )
                continue
            if host not in config.allowed_hosts:
                report.assets_held += 1
                add("CAT_ASSET_HOST_NOT_ALLOWLISTED", f"host {host} not allow-listed", HOLD)
                continue
            status, headers = head_probe(href)
            if not 200 <= status < 300:
                add("CAT_ASSET_REMOTE_UNREACHABLE", f"HEAD {href} -> {status or 'no answer'}")
                continue
            length = headers.get("content-length", "")
            if not length.isdigit() or int(length) != size:
                add("CAT_ASSET_SIZE_MISMATCH", f"remote size {length or '?'} != declared {size}")
            continue
        if scheme:
            add("CAT_ASSET_HREF_INVALID", f"asset href scheme {scheme!r} cannot be verified")
            continue
        local, code = resolve_local_asset(href, item_dir=item_path.parent, config=config)
        if code is not None:
            add(code, f"asset href {href!r}: {code.removeprefix('CAT_ASSET_').lower()}")
            continue
        assert local is not None
        try:
            actual_size = local.stat().st_size
            actual = "sha256:" + sha256_file(local)
        except OSError:
            add("CAT_ASSET_READ_ERROR", f"asset {href!r} could not be read")
            continue
        if actual_size != size:
            add("CAT_ASSET_SIZE_MISMATCH", f"{href}: {actual_size} bytes, catalog says {size}")
        elif actual != checksum:
            add(
                "CAT_ASSET_DIGEST_MISMATCH",
                f"{href}: sha256 {actual[7:19]}… != catalog {checksum[7:19]}…",
            )
        else:
            report.assets_verified += 1
    return found


# --- walking ---------------------------------------------------------------------------


def _rel(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.name


def _walk_links(
    config: CatalogConfig, findings: list[Finding], broken: list[dict[str, str]]
) -> Iterator[Path]:
    """Item files reachable from the root catalog; broken links become findings."""
    assert config.root is not None
    seen: set[Path] = set()
    stack = [config.root]
    base = Path(os.path.normpath(config.base))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        record, code = read_json_object(node)
        if record is None:
            findings.append(Finding(code or "CAT_FILE_READ_ERROR", _rel(node, base)))
            continue
        if record.get("type") == "Feature":
            yield node
            continue
        for index, link in enumerate(record.get("links") or []):
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = str(link.get("href", ""))
            subject = _rel(node, base)
            where = f"/links/{index}"
            target = Path(os.path.normpath(node.parent / urllib.parse.unquote(href)))
            if urllib.parse.urlsplit(href).scheme or (
                target != base and base not in target.parents
            ):
                findings.append(
                    Finding(
                        "CAT_LINK_PATH_ESCAPE",
                        subject,
                        where,
                        BLOCKING,
                        f"link {href!r} leaves the catalog folder",
                    )
                )
                continue
            if not target.is_file():
                broken.append({"parent": subject, "href": href, "rel": str(link.get("rel"))})
                findings.append(
                    Finding(
                        "CAT_LINK_BROKEN",
                        subject,
                        where,
                        BLOCKING,
                        f"{link.get('rel')} link {href!r} points to a missing file",
                    )
                )
                continue
            stack.append(target)


def item_files(
    config: CatalogConfig, findings: list[Finding], broken: list[dict[str, str]] | None = None
) -> list[Path]:
    if config.root is not None:
        files = list(_walk_links(config, findings, [] if broken is None else broken))
    else:
        quarantine = config.quarantine.resolve()
        files = []
        for entry in config.items:
            candidates = [entry] if entry.is_file() else sorted(entry.rglob("*.json"))
            files += [p for p in candidates if quarantine not in p.resolve().parents]
    return sorted(set(files))


@dataclass
class CatalogScan:
    """Everything one pass over a catalog established."""

    items: list[ItemReport]
    link_findings: list[Finding]
    broken_links: list[dict[str, str]] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        out = list(self.link_findings)
        for item in self.items:
            out.extend(item.findings)
        return out

    def with_codes(self, codes: frozenset[str]) -> list[Finding]:
        return [f for f in self.findings if f.code in codes]

    def items_with(self, codes: frozenset[str]) -> list[ItemReport]:
        return [item for item in self.items if any(f.code in codes for f in item.findings)]


def scan_item(path: Path, config: CatalogConfig, head_probe: HeadProbe = _head_probe) -> ItemReport:
    subject = _rel(path, config.base)
    record, code = read_json_object(path)
    report = ItemReport(file=subject, item_id=None)
    if record is None:
        report.findings.append(Finding(code or "CAT_FILE_READ_ERROR", subject))
        return report
    report.item_id = record.get("id") if _text(record.get("id")) else None
    report.findings.extend(record_findings(record, subject))
    report.findings.extend(
        asset_findings(
            record,
            item_path=path,
            subject=subject,
            config=config,
            report=report,
            head_probe=head_probe,
        )
    )
    report.findings.sort()
    return report


def scan(config: CatalogConfig, head_probe: HeadProbe = _head_probe) -> CatalogScan:
    link_findings: list[Finding] = []
    broken: list[dict[str, str]] = []
    files = item_files(config, link_findings, broken)
    items = [scan_item(p, config, head_probe) for p in files]
    return CatalogScan(items, sorted(link_findings), broken)


# --- reversible quarantine -------------------------------------------------------------

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


def _quarantine_dir(config: CatalogConfig, item_id: str) -> Path:
    name = _SAFE_NAME.sub("_", item_id).lstrip(".") or "item"
    return config.quarantine / name


def _parents_linking(
    config: CatalogConfig, item_path: Path
) -> list[tuple[Path, int, dict[str, Any]]]:
    """(parent file, link index, link) for every catalog/collection linking to the item."""
    if config.root is None:
        return []
    found = []
    for parent in sorted(config.base.rglob("*.json")):
        if config.quarantine in parent.parents:
            continue
        record, _ = read_json_object(parent)
        if record is None or record.get("type") == "Feature":
            continue
        for index, link in enumerate(record.get("links") or []):
            if isinstance(link, dict) and link.get("rel") == "item":
                href = urllib.parse.unquote(str(link.get("href", "")))
                if Path(os.path.normpath(parent.parent / href)) == item_path:
                    found.append((parent, index, link))
    return found


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, ensure_ascii=False) + "\n").encode()


def is_quarantined(config: CatalogConfig, item_id: str) -> bool:
    return (_quarantine_dir(config, item_id) / "record.json").is_file()


def quarantine_item(
    config: CatalogConfig, item_path: Path, *, reason: str, incident: str
) -> dict[str, Any]:
    """Withdraw an item from the published catalog, keeping it byte-for-byte.

    The item moves to `<quarantine>/<id>/item.json` with a record of where it came from
    and which parent links pointed at it; those links are removed so that no client walks
    into it. Running it again on a quarantined item changes nothing.
    """
    record, code = read_json_object(item_path)
    item_id = str(record.get("id")) if record and _text(record.get("id")) else item_path.stem
    folder = _quarantine_dir(config, item_id)
    if (folder / "record.json").is_file() and not item_path.exists():
        existing: dict[str, Any] = json.loads((folder / "record.json").read_text())
        existing["already"] = True
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    parents = _parents_linking(config, item_path)
    data = item_path.read_bytes()
    meta: dict[str, Any] = {
        "item_id": item_id,
        "original_path": _rel(item_path, config.base),
        "sha256": hashlib.sha256(data).hexdigest(),
        "reason": reason,
        "incident": incident,
        "quarantined_at": now_iso(),
        "parent_links": [
            {"parent": _rel(p, config.base), "index": i, "link": link} for p, i, link in parents
        ],
        "read_error": code,
    }
    if not (folder / "item.json").exists():
        create_new(folder / "item.json", data)
    replace_atomic(folder / "record.json", _dump(meta))
    for parent, _index, link in parents:
        doc, _ = read_json_object(parent)
        assert doc is not None
        doc["links"] = [entry for entry in doc.get("links", []) if entry != link]
        replace_atomic(parent, _dump(doc))
    item_path.unlink()
    meta["already"] = False
    return meta


def restore_item(config: CatalogConfig, item_id: str) -> dict[str, Any]:
    """Undo `quarantine_item`: put the item back and re-link it. Safe to run twice."""
    folder = _quarantine_dir(config, item_id)
    record_path = folder / "record.json"
    if not record_path.is_file():
        return {"item_id": item_id, "restored": False, "reason": "not quarantined"}
    meta = json.loads(record_path.read_text())
    original = config.base / meta["original_path"]
    if not original.exists():
        create_new(original, (folder / "item.json").read_bytes())
    for entry in meta["parent_links"]:
        parent = config.base / entry["parent"]
        doc, _ = read_json_object(parent)
        if doc is None:
            continue
        links = doc.setdefault("links", [])
        if entry["link"] not in links:
            links.insert(min(entry["index"], len(links)), entry["link"])
            replace_atomic(parent, _dump(doc))
    (folder / "item.json").unlink()
    record_path.unlink()
    folder.rmdir()
    return {"item_id": item_id, "restored": True, "path": meta["original_path"]}


def remove_broken_link(config: CatalogConfig, parent_file: str, href: str) -> dict[str, Any]:
    """Drop a dangling child/item link (a CAT_LINK_BROKEN finding). Idempotent."""
    parent = config.base / parent_file
    doc, _ = read_json_object(parent)
    if doc is None:
        return {"removed": False, "reason": "parent unreadable"}
    links = doc.get("links", [])
    wanted = href
    for index, link in enumerate(links):
        if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
            continue
        href = urllib.parse.unquote(str(link.get("href", "")))
        if href == urllib.parse.unquote(wanted) and not (parent.parent / href).exists():
            del links[index]
            replace_atomic(parent, _dump(doc))
            return {"removed": True, "parent": parent_file, "index": index, "link": link}
    return {"removed": False, "reason": "no dangling link left"}


def restore_link(config: CatalogConfig, parent: str, index: int, link: dict[str, Any]) -> bool:
    path = config.base / parent
    doc, _ = read_json_object(path)
    if doc is None:
        return False
    links = doc.setdefault("links", [])
    if link in links:
        return False
    links.insert(min(index, len(links)), link)
    replace_atomic(path, _dump(doc))
    return True


@undoable("catalog.restore_item")
def _undo_restore_item(target: Target, item_id: str) -> dict[str, Any]:
    return restore_item(CatalogConfig.from_target(target), item_id)


@undoable("catalog.restore_link")
def _undo_restore_link(
    target: Target, parent: str, index: int, link: dict[str, Any]
) -> dict[str, Any]:
    restored = restore_link(CatalogConfig.from_target(target), parent, index, link)
    return {"restored": restored, "parent": parent}
