"""STAC catalog health: records, links, asset checksums; reversible quarantine.

Implements KFM's catalog-health profile (`kfm.catalog-health.stac-item.v1`) with its
finding codes, so that its fixtures' verdicts reproduce: CAT_ASSET_DIGEST_MISMATCH,
CAT_ASSET_PATH_ESCAPE, CAT_ASSET_REMOTE_UNVERIFIED (HOLD while the network is denied),
CAT_STAC_LICENSE_MISSING, ... plus catalog-walk codes of our own (CAT_LINK_BROKEN,
CAT_LINK_PATH_ESCAPE) for catalogs whose items are reached through links.

Asset hrefs resolve in one of two ways:
- `asset_root` set (KFM fixtures): relative to that folder; any `..`, absolute path or
  symlink is refused before the filesystem is touched.
- otherwise (STAC as the world writes it): relative to the file that holds them, and must
  stay inside the boundary: `data_root` when the target names one, else the root
  catalog's folder (or each `items` folder), so a sibling `assets/` folder works.
Paths outside the boundary are never opened.

Profile findings never switch off integrity: an asset whose descriptor breaks KFM's
profile (no title, a multihash checksum) is still checked for existence, containment and
bytes. Digests are KFM's `sha256:` or the File extension's multihash (`digests.py`);
remote schemes (http, https, s3, ...) are HOLD while the network is denied. STAC 1.0.x and
1.1.x (pre-releases included) are judged; other versions are HOLD. An item without its own
licence inherits its collection's. Item folders are scanned for .json, .jsonld and
.geojson; every other file, and records that are not items, are listed as skipped.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..._fs import create_new, hash_jobs, replace_atomic
from ..._time import now_iso
from ...target import Target
from ...vocab import Verdict
from .. import BLOCKING, HOLD, Finding, undoable, verdict
from ..common import cluster
from ..common import json as strict_json
from ..common.cluster import NotVerifiedError
from ..common.files import FileProblem, read_bounded, read_regular
from ..common.findings import FindingsReport
from ..common.paths import rel
from . import digests
from .json_docs import READ_PROBLEM_CODES, collection_license
from .stac import stac_version_judged

MAX_RECORD_BYTES = 1_048_576
SHA256_CHECKSUM_RE = re.compile(r"sha256:[0-9a-f]{64}")
RECORD_SUFFIXES = (".json", ".jsonld", ".geojson")
REMOTE_SCHEMES = frozenset({"http", "https", "s3", "gs", "gcs", "az", "abfs", "ftp", "sftp"})
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
    {
        "CAT_ASSET_DIGEST_MISMATCH",
        "CAT_ASSET_SIZE_MISMATCH",
        "CAT_ASSET_READ_ERROR",
        "CAT_ASSET_CHECKSUM_PLACEHOLDER",
        "CAT_ASSET_CHECKSUM_INVALID",
    }
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
        "CAT_ROOT_NOT_CATALOG",
    }
)
HeadProbe = Callable[[str], tuple[int, dict[str, str]]]
Hasher = Callable[[Path, str], tuple[str, bool]]  # (digest, reused); NotVerifiedError


@dataclass(frozen=True)
class CatalogConfig:
    """Where a catalog lives, read from the target's `catalog` section."""

    base: Path  # names are shown relative to this folder; the default boundary
    root: Path | None  # STAC root catalog.json, walked through its links
    items: tuple[Path, ...]  # or: folders / files of STAC items
    asset_root: Path | None  # KFM mode: relative hrefs resolve here
    quarantine: Path
    network: str = "deny"
    allowed_hosts: frozenset[str] = frozenset()
    data_root: Path | None = None  # explicit boundary for item-relative hrefs
    executor: str | None = None  # a Dask scheduler that hashes the assets (cluster.py)

    @classmethod
    def from_target(cls, target: Target) -> CatalogConfig:
        section = target.section("catalog")
        root = target.resolve("catalog", "root", required=False)
        items = tuple(target.resolve_many("catalog", "items"))
        if root is None and not items:
            from ...errors import TargetError

            raise TargetError(f"target {target.path}: catalog needs 'root' or 'items'")
        asset_root = target.resolve("catalog", "asset_root", required=False)
        data_root = target.resolve("catalog", "data_root", required=False)
        base = data_root or (root.parent if root else (asset_root or target.base))
        quarantine = target.resolve("catalog", "quarantine")
        assert quarantine is not None
        hosts = section.get("allowed_hosts") or []
        return cls(
            base=base,
            root=root,
            items=items,
            asset_root=asset_root,
            quarantine=quarantine,
            network=target.network,
            allowed_hosts=frozenset(str(h).lower().rstrip(".") for h in hosts),
            data_root=data_root,
            executor=cluster.address_of(target),
        )

    def boundary_for(self, record: Path) -> Path:
        """The folder an item-relative href of `record` may not leave."""
        if self.data_root is not None:
            return self.data_root
        if self.root is not None:
            return self.root.parent
        for entry in self.items:
            folder = entry if entry.is_dir() else entry.parent
            if record == entry or folder in record.parents:
                return folder
        return self.base


@dataclass
class ItemReport(FindingsReport):
    """The health of one STAC item: KFM's outcome and findings for it."""

    ERROR_CODES: ClassVar[frozenset[str]] = ERROR_CODES

    file: str  # relative to the catalog base
    item_id: str | None
    findings: list[Finding] = field(default_factory=list)
    assets_total: int = 0
    assets_verified: int = 0
    assets_embargoed: int = 0
    assets_held: int = 0
    assets_examined: int = 0  # bytes read and compared (match or not)
    assets_reused: int = 0  # of those, digests this run computed before for unchanged files

    @property
    def assets_in_scope(self) -> int:
        """Assets whose bytes this catalog promises and a run can verify (all but the
        embargoed ones, whose bytes are withheld by policy behind a `via` link)."""
        return self.assets_total - self.assets_embargoed

    @property
    def integrity(self) -> str:
        """This item's integrity alone (bytes, containment, links), without the profile."""
        relevant = [
            f
            for f in self.findings
            if f.code in INTEGRITY_CODES | LINK_CODES | ERROR_CODES or f.severity == HOLD
        ]
        found = verdict(relevant, ERROR_CODES)
        if found == Verdict.PASS and self.assets_examined < self.assets_in_scope:
            return Verdict.HOLD  # coverage: what was not examined is not proven
        return found

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "item_id": self.item_id,
            "outcome": self.outcome,
            "integrity": self.integrity,
            "codes": self.codes,
            "assets_total": self.assets_total,
            "assets_verified": self.assets_verified,
            "assets_embargoed": self.assets_embargoed,
            "assets_held": self.assets_held,
            "assets_examined": self.assets_examined,
        }


# --- reading ---------------------------------------------------------------------------


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """Strict JSON read: (object, None) or (None, error code). Symlinks are refused."""
    data, problem = read_bounded(path, MAX_RECORD_BYTES)
    if data is None:
        return None, "CAT_" + READ_PROBLEM_CODES[problem or FileProblem.UNREADABLE]
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


def record_findings(
    record: dict[str, Any], subject: str, inherited_license: str | None = None
) -> list[Finding]:
    """KFM profile rules on the item record itself (governance, provenance rels).

    `inherited_license` is the licence of the item's collection: STAC puts licences on the
    collection where it can, so an item without its own inherits it."""
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
    version = record.get("stac_version")
    if not _text(version):
        block("CAT_STAC_VERSION_MISSING", "/stac_version", "stac_version missing")
    elif not stac_version_judged(version):
        found.append(
            Finding(
                "CAT_STAC_VERSION_UNKNOWN",
                subject,
                "/stac_version",
                HOLD,
                f"stac_version {version!r} is not 1.0.x or 1.1.x: not judged (HOLD)",
            )
        )
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
    if not _text(record.get("license")) and not _text(inherited_license):
        block("CAT_STAC_LICENSE_MISSING", "/license", "license missing (item and collection)")
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
    href: str, *, item_dir: Path, config: CatalogConfig, boundary: Path | None = None
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
        start, boundary = item_dir, boundary or config.base
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


def _descriptor_ok(asset: dict[str, Any]) -> bool:
    """KFM's profile for an asset descriptor (a finding of its own, never a reason to skip
    the integrity checks)."""
    checksum, size = asset.get("file:checksum"), asset.get("file:size")
    roles = asset.get("roles")
    return bool(
        _safe_href(asset.get("href"))
        and _text(asset.get("type"))
        and _string_list(roles)
        and _text(asset.get("title"))
        and isinstance(checksum, str)
        and SHA256_CHECKSUM_RE.fullmatch(checksum)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
    )


def asset_findings(
    record: dict[str, Any],
    *,
    item_path: Path,
    subject: str,
    config: CatalogConfig,
    report: ItemReport,
    head_probe: HeadProbe = _head_probe,
    hasher: Hasher = digests.file_digest,
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
        if not _descriptor_ok(asset):
            add(
                "CAT_ASSET_DESCRIPTOR_INVALID",
                "asset needs a safe href, type, title, roles, file:checksum (sha256:), file:size",
            )
        href, roles, size = asset.get("href"), asset.get("roles"), asset.get("file:size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            size = None
        if not _text(href) or any(ord(char) < 32 for char in str(href)):
            add("CAT_ASSET_HREF_INVALID", "asset has no usable href: nothing to verify")
            continue
        assert isinstance(href, str)
        declared = digests.parse(asset.get("file:checksum"))
        if declared.status == digests.PLACEHOLDER:
            add("CAT_ASSET_CHECKSUM_PLACEHOLDER", f"{href}: {declared.message}")
        elif declared.status == digests.INVALID and "file:checksum" in asset:
            add("CAT_ASSET_CHECKSUM_INVALID", f"{href}: {declared.message}")
        parts = urllib.parse.urlsplit(href)
        scheme = parts.scheme.lower()
        if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
            _remote(href, scheme, roles, size, has_via, config, report, add, head_probe)
            continue
        local, code = resolve_local_asset(
            href,
            item_dir=item_path.parent,
            config=config,
            boundary=config.boundary_for(item_path),
        )
        if code is not None:
            add(code, f"asset href {href!r}: {code.removeprefix('CAT_ASSET_').lower()}")
            continue
        assert local is not None
        if declared.status == digests.UNSUPPORTED:
            report.assets_held += 1
            add("CAT_ASSET_DIGEST_UNSUPPORTED", f"{href}: {declared.message} (HOLD)", HOLD)
            continue
        if not declared.usable:
            if "file:checksum" not in asset:
                report.assets_held += 1
                add("CAT_ASSET_CHECKSUM_MISSING", f"{href}: no file:checksum to verify", HOLD)
            continue
        try:
            actual_size = local.stat().st_size
            actual, reused = hasher(local, declared.hashlib_name)
        except NotVerifiedError as exc:
            report.assets_held += 1
            add("CAT_ASSET_NOT_VERIFIED", f"{href}: not verified: {exc} (HOLD)", HOLD)
            continue
        except OSError:
            add("CAT_ASSET_READ_ERROR", f"asset {href!r} could not be read")
            continue
        report.assets_examined += 1
        report.assets_reused += reused
        if size is not None and actual_size != size:
            add("CAT_ASSET_SIZE_MISMATCH", f"{href}: {actual_size} bytes, catalog says {size}")
        elif actual != declared.hexdigest:
            add(
                "CAT_ASSET_DIGEST_MISMATCH",
                f"{href}: {declared.algorithm} {actual[:12]}… != catalog "
                f"{declared.hexdigest[:12]}…",
            )
        else:
            report.assets_verified += 1
    return found


def _remote(
    href: str,
    scheme: str,
    roles: Any,
    size: int | None,
    has_via: bool,
    config: CatalogConfig,
    report: ItemReport,
    add: Callable[..., None],
    head_probe: HeadProbe,
) -> None:
    """A remote asset: embargoed (bytes withheld by policy), held, or probed with HEAD."""
    if scheme == "https" and isinstance(roles, list) and "embargoed" in roles:
        report.assets_embargoed += 1
        if not has_via:
            add("CAT_ASSET_EMBARGO_VIA_MISSING", "embargoed asset without a 'via' link")
        return
    if scheme == "file":
        add("CAT_ASSET_HREF_INVALID", f"asset href scheme {scheme!r} is not followed")
        return
    if scheme not in REMOTE_SCHEMES:
        report.assets_held += 1
        add(
            "CAT_ASSET_REMOTE_UNVERIFIED", f"{scheme}: asset {href} cannot be verified (HOLD)", HOLD
        )
        return
    if config.network != "head" or scheme != "https" or not _safe_href(href):
        report.assets_held += 1
        why = "network is denied" if config.network != "head" else f"{scheme} is not probed"
        add(
            "CAT_ASSET_REMOTE_UNVERIFIED",
            f"remote asset {href} not verified: {why} (HOLD, not PASS)",
            HOLD,
        )
        return
    host = (urllib.parse.urlsplit(href).hostname or "").rstrip(".").lower()
    if host not in config.allowed_hosts:
        report.assets_held += 1
        add("CAT_ASSET_HOST_NOT_ALLOWLISTED", f"host {host} not allow-listed", HOLD)
        return
    status, headers = head_probe(href)
    if not 200 <= status < 300:
        add("CAT_ASSET_REMOTE_UNREACHABLE", f"HEAD {href} -> {status or 'no answer'}")
        return
    length = headers.get("content-length", "")
    if size is None or not length.isdigit() or int(length) != size:
        add("CAT_ASSET_SIZE_MISMATCH", f"remote size {length or '?'} != declared {size}")
        return
    report.assets_held += 1  # a HEAD proves the size, never the bytes
    add("CAT_ASSET_REMOTE_UNVERIFIED", f"{href}: size matches, bytes not hashed (HOLD)", HOLD)


# --- walking ---------------------------------------------------------------------------


def _walk_links(
    config: CatalogConfig,
    findings: list[Finding],
    broken: list[dict[str, str]],
    parents: dict[Path, Path] | None = None,
) -> Iterator[Path]:
    """Item files reachable from the root catalog; broken links become findings.

    `parents` collects item -> the collection (or catalog) that links it, for licence
    inheritance."""
    assert config.root is not None
    seen: set[Path] = set()
    stack = [config.root]
    base = Path(os.path.normpath(config.base))
    boundary = Path(os.path.normpath(config.boundary_for(config.root)))
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        record, code = read_json_object(node)
        if record is None:
            findings.append(Finding(code or "CAT_FILE_READ_ERROR", rel(node, base)))
            continue
        if record.get("type") == "Feature":
            if node == config.root:
                findings.append(
                    Finding(
                        "CAT_ROOT_NOT_CATALOG",
                        rel(node, base),
                        "/type",
                        BLOCKING,
                        "catalog.root is an Item, not a Catalog or Collection",
                    )
                )
                continue
            yield node
            continue
        if node == config.root and record.get("type") not in ("Catalog", "Collection"):
            findings.append(
                Finding(
                    "CAT_ROOT_NOT_CATALOG",
                    rel(node, base),
                    "/type",
                    BLOCKING,
                    f"catalog.root has type {record.get('type')!r}, not Catalog or Collection",
                )
            )
            continue
        for index, link in enumerate(record.get("links") or []):
            if not isinstance(link, dict) or link.get("rel") not in ("child", "item"):
                continue
            href = str(link.get("href", ""))
            subject = rel(node, base)
            where = f"/links/{index}"
            scheme = urllib.parse.urlsplit(href).scheme.lower()
            if len(scheme) > 1 and scheme != "file":
                findings.append(
                    Finding(
                        "CAT_LINK_REMOTE_UNVERIFIED",
                        subject,
                        where,
                        HOLD,
                        f"{link.get('rel')} link {href!r} is remote: not followed (HOLD)",
                    )
                )
                continue
            target = Path(os.path.normpath(node.parent / urllib.parse.unquote(href)))
            if scheme or (target != boundary and boundary not in target.parents):
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
            if parents is not None and link.get("rel") == "item":
                parents.setdefault(target, node)
            stack.append(target)


def _folder_records(config: CatalogConfig, skipped: list[dict[str, str]]) -> list[Path]:
    """Record files of the `items` folders; every other file is listed as skipped."""
    quarantine = config.quarantine.resolve()
    files: list[Path] = []
    for entry in config.items:
        if entry.is_file():
            files.append(entry)
            continue
        for path in sorted(entry.rglob("*")):
            if not path.is_file() or quarantine == path or quarantine in path.resolve().parents:
                continue
            if path.suffix.lower() in RECORD_SUFFIXES:
                files.append(path)
            else:
                skipped.append(
                    {
                        "file": rel(path, config.base),
                        "reason": "not a .json/.jsonld/.geojson record",
                    }
                )
    return files


def item_files(
    config: CatalogConfig,
    findings: list[Finding],
    broken: list[dict[str, str]] | None = None,
    skipped: list[dict[str, str]] | None = None,
    parents: dict[Path, Path] | None = None,
) -> list[Path]:
    if config.root is not None:
        files = list(_walk_links(config, findings, [] if broken is None else broken, parents))
    else:
        files = _folder_records(config, [] if skipped is None else skipped)
    return sorted(set(files))


@dataclass
class CatalogScan:
    """Everything one pass over a catalog established."""

    items: list[ItemReport]
    link_findings: list[Finding]
    broken_links: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {file, reason}
    links_followed: int = 0

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

    @property
    def assets_in_scope(self) -> int:
        return sum(item.assets_in_scope for item in self.items)

    @property
    def assets_examined(self) -> int:
        return sum(item.assets_examined for item in self.items)

    @property
    def assets_verified(self) -> int:
        return sum(item.assets_verified for item in self.items)

    @property
    def assets_reused(self) -> int:
        """Digests taken from this run's earlier scan: the files are unchanged since
        (device, inode, size, mtime, ctime), and no action was applied in between."""
        return sum(item.assets_reused for item in self.items)


def scan_item(
    path: Path,
    config: CatalogConfig,
    head_probe: HeadProbe = _head_probe,
    parent: Path | None = None,
    hasher: Hasher = digests.file_digest,
) -> ItemReport:
    subject = rel(path, config.base)
    record, code = read_json_object(path)
    report = ItemReport(file=subject, item_id=None)
    if record is None:
        report.findings.append(Finding(code or "CAT_FILE_READ_ERROR", subject))
        return report
    report.item_id = record.get("id") if _text(record.get("id")) else None
    inherited = None
    if not _text(record.get("license")):
        inherited = collection_license(
            path, record, config.boundary_for(path), (parent,) if parent else ()
        )
    report.findings.extend(record_findings(record, subject, inherited))
    report.findings.extend(
        asset_findings(
            record,
            item_path=path,
            subject=subject,
            config=config,
            report=report,
            head_probe=head_probe,
            hasher=hasher,
        )
    )
    report.findings.sort()
    return report


def scan(config: CatalogConfig, head_probe: HeadProbe = _head_probe) -> CatalogScan:
    link_findings: list[Finding] = []
    broken: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    parents: dict[Path, Path] = {}
    files = item_files(config, link_findings, broken, skipped, parents)
    wanted: list[Path] = []
    for path in files:
        if config.root is None:
            record, _ = read_json_object(path)
            kind = record.get("type") if record is not None else None
            if kind in ("Collection", "Catalog"):
                skipped.append(
                    {"file": rel(path, config.base), "reason": f"a STAC {kind}, not an item"}
                )
                continue
        wanted.append(path)
    # Items are independent: scanned on every core (hashing and reads release the GIL),
    # or with the target's Dask cluster hashing (cluster.py); reported in catalog order.
    hasher: Hasher = digests.file_digest
    workers = hash_jobs()
    remote: cluster.DaskHasher | None = None
    if config.executor is not None:
        remote = cluster.DaskHasher(config.executor).connect()
        hasher, workers = remote, remote.parallelism
    try:
        with ThreadPoolExecutor(
            max_workers=min(workers, max(1, len(wanted))), thread_name_prefix="catalog-scan"
        ) as pool:
            items = list(
                pool.map(lambda p: scan_item(p, config, head_probe, parents.get(p), hasher), wanted)
            )
    finally:
        if remote is not None:
            remote.close()
    return CatalogScan(items, sorted(link_findings), broken, skipped)


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
        existing: dict[str, Any] = strict_json.load_file(folder / "record.json", MAX_RECORD_BYTES)
        existing["already"] = True
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    parents = _parents_linking(config, item_path)
    data = read_regular(item_path, MAX_RECORD_BYTES)  # a link or FIFO: refused, not followed
    meta: dict[str, Any] = {
        "item_id": item_id,
        "original_path": rel(item_path, config.base),
        "sha256": hashlib.sha256(data).hexdigest(),
        "reason": reason,
        "incident": incident,
        "quarantined_at": now_iso(),
        "parent_links": [
            {"parent": rel(p, config.base), "index": i, "link": link} for p, i, link in parents
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
    meta = strict_json.load_file(record_path, MAX_RECORD_BYTES)
    original = config.base / meta["original_path"]
    if not original.exists():
        create_new(original, read_regular(folder / "item.json", MAX_RECORD_BYTES))
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


def remove_broken_link(
    config: CatalogConfig,
    parent_file: str,
    href: str,
    at: Callable[[Path], Path] = lambda path: path,
) -> dict[str, Any]:
    """Drop a dangling child/item link (a CAT_LINK_BROKEN finding). Idempotent.

    `at` maps the catalog file to where the change is written: itself, or its twin in a
    PR-first worktree (record.pr_action); the link target is looked for in the catalog."""
    parent = config.base / parent_file
    doc, _ = read_json_object(at(parent))
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
            replace_atomic(at(parent), _dump(doc))
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
