"""Server certificates with the `openssl` command line tool: issue one, fingerprint one.

What RBK-infra-cert-expiry's renewal uses against any target that names its issuer
(`tls[].renew.issuer_cert` / `issuer_key`): `issue` signs a fresh server certificate (new EC
P-256 key) for a hostname and IPs with a given validity, `fingerprint` is the sha256 of a
certificate's DER bytes (what a TLS client sees). Debian's `openssl` only, no Python
crypto package; light imports (used inside kernels). The sandbox's PKI
(sandbox/services/tls.py) is built from these, never the other way round: checks do not
import the sandbox.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from ...errors import SetupError
from ..common.files import read_regular

CURVE = "prime256v1"
MAX_PEM_BYTES = 1 << 20  # a certificate (chain) file: refused unread beyond


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise SetupError("the `openssl` command is missing: install Debian's openssl package")
    return found


def run_openssl(argv: list[str], what: str) -> None:
    result = subprocess.run(
        [openssl(), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"openssl {what} failed: {detail[0]}")


def issue(
    ca_cert: Path,
    ca_key: Path,
    dest: Path,
    *,
    hostname: str = "localhost",
    ips: tuple[str, ...] = ("127.0.0.1",),
    days: int = 90,
) -> tuple[Path, Path]:
    """Sign a fresh server certificate (new key) into folder `dest` as server.crt/.key."""
    if days < 1:
        raise ValueError("a certificate needs at least one day of validity")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".issue-", dir=dest) as tmp:
        work = Path(tmp)
        san = ",".join([f"DNS:{hostname}", *(f"IP:{ip}" for ip in ips)])
        (work / "ext.cnf").write_text(
            f"subjectAltName={san}\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid\n"
        )
        run_openssl(
            [
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                f"ec_paramgen_curve:{CURVE}",
                "-nodes",
                "-keyout",
                str(work / "server.key"),
                "-out",
                str(work / "server.csr"),
                "-subj",
                f"/O=KFM Sandbox/CN={hostname}",
            ],
            "key and CSR",
        )
        run_openssl(
            [
                "x509",
                "-req",
                "-in",
                str(work / "server.csr"),
                "-CA",
                str(ca_cert),
                "-CAkey",
                str(ca_key),
                "-set_serial",
                "0x" + secrets.token_hex(16),
                "-days",
                str(days),
                "-sha256",
                "-extfile",
                str(work / "ext.cnf"),
                "-out",
                str(work / "server.crt"),
            ],
            "certificate signing",
        )
        (work / "server.key").chmod(0o600)
        cert, key = dest / "server.crt", dest / "server.key"
        # key first: until the certificate follows, the pair does not load and the
        # listener keeps serving the previous one
        (work / "server.key").replace(key)
        (work / "server.crt").replace(cert)
    return cert, key


def read_pem(path: Path) -> str:
    """A PEM file's text: a link, a FIFO or an oversized file raises `FileProblemError`."""
    return read_regular(path, MAX_PEM_BYTES).decode("utf-8")


def fingerprint(cert: Path) -> str:
    """sha256 of the certificate's DER bytes (what a TLS client sees), hex."""
    der = ssl.PEM_cert_to_DER_cert(read_pem(cert))
    return hashlib.sha256(der).hexdigest()
