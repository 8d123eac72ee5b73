"""TLS for the live sandbox: an internal CA, server certificates, and a reloading listener.

Certificates are made with Debian's `openssl` command line tool (no Python crypto
package): `make_ca` creates the sandbox's internal CA (EC P-256, in live/tls/ca/, the
issuer a real deployment keeps in its PKI), `issue` signs a server certificate for
`localhost` / 127.0.0.1 with a given validity. The API process serves HTTPS on a second
loopback port (`serve_tls`, started from api.main) with the certificate and key installed
in live/state/tls/: every new connection checks whether those files changed and, if the
new pair loads, uses it — a renewed certificate is picked up without restarting anything.
A pair that does not load (half-written, key not matching) is ignored and the previous
one keeps serving.

Light imports only (ssl, subprocess): the runbooks' check code uses `issue` and
`fingerprint` inside kernels.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..errors import SetupError

CURVE = "prime256v1"
CA_SUBJECT = "/O=KFM Sandbox/CN=KFM Sandbox Internal CA"
HANDSHAKE_TIMEOUT_S = 15.0


def openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise SetupError("the `openssl` command is missing: install Debian's openssl package")
    return found


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(
        [openssl(), *argv], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"openssl {what} failed: {detail[0]}")


def make_ca(folder: Path, days: int = 3650) -> tuple[Path, Path]:
    """An internal CA (certificate, key) in `folder`; kept when it already exists."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert, key = folder / "ca.crt", folder / "ca.key"
    if cert.is_file() and key.is_file():
        return cert, key
    _run(
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            f"ec_paramgen_curve:{CURVE}",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            str(days),
            "-sha256",
            "-subj",
            CA_SUBJECT,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-addext",
            "subjectKeyIdentifier=hash",
        ],
        "CA creation",
    )
    key.chmod(0o600)
    return cert, key


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
        _run(
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
        _run(
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


def fingerprint(cert: Path) -> str:
    """sha256 of the certificate's DER bytes (what a TLS client sees), hex."""
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


def load_pair(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for the pair; ssl.SSLError when the key does not match."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context


class ReloadingContext:
    """The server context for a certificate/key pair on disk, reloaded when they change."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = cert, key
        self._lock = threading.Lock()
        self._stamp: tuple[int, ...] | None = None
        self._context: ssl.SSLContext | None = None
        self.loads = 0

    def _files_stamp(self) -> tuple[int, ...]:
        a, b = self.cert.stat(), self.key.stat()
        return (a.st_ino, a.st_mtime_ns, a.st_size, b.st_ino, b.st_mtime_ns, b.st_size)

    def current(self) -> ssl.SSLContext:
        with self._lock:
            try:
                stamp = self._files_stamp()
            except OSError:
                stamp = None
            if stamp is not None and stamp != self._stamp:
                try:
                    self._context = load_pair(self.cert, self.key)
                    self._stamp = stamp
                    self.loads += 1
                except (ssl.SSLError, OSError) as exc:
                    print(f"tls: keeping the previous certificate: {exc}", file=sys.stderr)
            if self._context is None:
                raise ssl.SSLError("no usable certificate installed")
            return self._context


class TLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose connections are wrapped (handshake in the worker thread)."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        contexts: ReloadingContext,
    ) -> None:
        self.contexts = contexts
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            conn = self.contexts.current().wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            conn.settimeout(None)
            handler: Any = self.RequestHandlerClass
            handler(conn, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def serve_tls(
    address: tuple[str, int], handler: type[BaseHTTPRequestHandler], cert: Path, key: Path
) -> TLSServer:
    """Start the HTTPS listener in a daemon thread (the API process's second port)."""
    contexts = ReloadingContext(cert, key)
    contexts.current()  # fail now, not on the first client, if nothing loads
    server = TLSServer(address, handler, contexts)
    threading.Thread(target=server.serve_forever, name="tls-listener", daemon=True).start()
    return server
