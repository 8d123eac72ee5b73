"""Sandbox part: a small Python environment, its lock and a wheelhouse (`security_environment`).

Three fake distributions installed into `site-packages` exactly as pip lays them out
(package files + `.dist-info` with METADATA, WHEEL and a RECORD of sha256 hashes); the
lock pins each with the sha256 of its wheel, and the wheelhouse holds those wheels
(deterministic zip files). Seeded faults (faulty variant): a file of `sbx-tile-cache`
changed after install (its RECORD hash no longer matches) and `sbx-http-client` is
installed at 2.4.0 while the lock pins 2.3.1.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path
from typing import Any

FOLDER = "security/supply"
RUNBOOK = "RBK-security-supply-chain"
ZIP_TIME = (2026, 6, 1, 0, 0, 0)

PACKAGES: dict[str, dict[str, str]] = {
    "sbx-geo-utils": {
        "version": "1.4.2",
        "sbx_geo_utils/__init__.py": '"""Sandbox geometry helpers."""\n__version__ = "1.4.2"\n',
        "sbx_geo_utils/bbox.py": (
            "def area(bbox):\n    west, south, east, north = bbox\n"
            "    return (east - west) * (north - south)\n"
        ),
    },
    "sbx-tile-cache": {
        "version": "0.9.0",
        "sbx_tile_cache/__init__.py": '"""Sandbox tile cache."""\n__version__ = "0.9.0"\n',
        "sbx_tile_cache/cache.py": (
            "CACHE = {}\n\n\ndef get(key):\n    return CACHE.get(key)\n\n\n"
            "def put(key, value):\n    CACHE[key] = value\n"
        ),
    },
    "sbx-http-client": {
        "version": "2.3.1",
        "sbx_http_client/__init__.py": '"""Sandbox HTTP client."""\n__version__ = "2.3.1"\n',
        "sbx_http_client/session.py": "TIMEOUT_S = 30\nVERIFY_TLS = True\n",
    },
}
TAMPERED = ("sbx-tile-cache", "sbx_tile_cache/cache.py")
DRIFTED = ("sbx-http-client", "2.4.0")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def distribution(name: str, version: str) -> dict[str, bytes]:
    """Every file a wheel of `name==version` installs, RECORD included."""
    spec = PACKAGES[name]
    module = name.replace("-", "_")
    files: dict[str, bytes] = {}
    for path, text in spec.items():
        if path == "version":
            continue
        files[path] = text.replace(spec["version"], version).encode()
    info = f"{module}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        f"Summary: KFM sandbox package {name}\n"
    ).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: kfm-sandbox\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    rows = [f"{path},sha256={_b64(data)},{len(data)}" for path, data in sorted(files.items())]
    rows.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(rows) + "\n").encode()
    return files


def wheel_bytes(name: str, version: str) -> bytes:
    """A deterministic wheel (stored, fixed timestamps, sorted members)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for path, data in sorted(distribution(name, version).items()):
            info = zipfile.ZipInfo(path, date_time=ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            archive.writestr(info, data)
    return buffer.getvalue()


def wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


def build(folder: Path, clean: bool) -> tuple[dict[str, Any], list[str]]:
    base = folder / FOLDER
    site = base / "site-packages"
    wheelhouse = base / "wheelhouse"
    site.mkdir(parents=True, exist_ok=True)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    lock = [
        "# Lock of the sandbox ingest environment: exact pins + wheel hashes "
        "(pip install --require-hashes).",
    ]
    for name in sorted(PACKAGES):
        version = PACKAGES[name]["version"]
        wheel = wheel_bytes(name, version)
        (wheelhouse / wheel_name(name, version)).write_bytes(wheel)
        lock.append(f"{name}=={version} \\")
        lock.append(f"    --hash=sha256:{hashlib.sha256(wheel).hexdigest()}")
        installed = version
        if not clean and name == DRIFTED[0]:
            installed = DRIFTED[1]
        for path, data in sorted(distribution(name, installed).items()):
            if not clean and (name, path) == TAMPERED:
                data += b"\n\ndef put_remote(key, value):  # added after install\n    pass\n"
            dest = site / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    (base / "constraints.txt").write_text("\n".join(lock) + "\n", encoding="utf-8")
    section = {
        "site_packages": f"{FOLDER}/site-packages",
        "lock": f"{FOLDER}/constraints.txt",
        "wheelhouse": f"{FOLDER}/wheelhouse",
        "untrusted_flag": f"{FOLDER}/KFM_ENV_UNTRUSTED.json",
        "backup": f"{FOLDER}/.reinstall-backup",
    }
    faults = (
        []
        if clean
        else [
            f"security: {TAMPERED[1]} of {TAMPERED[0]} changed after install "
            f"(SEC_PKG_FILE_TAMPERED) — {RUNBOOK}",
            f"security: {DRIFTED[0]} {DRIFTED[1]} installed, lock pins "
            f"{PACKAGES[DRIFTED[0]]['version']} (SEC_PKG_VERSION_DRIFT) — {RUNBOOK}",
        ]
    )
    return {"security_environment": section}, faults
