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

`issue` and `fingerprint` are the checks' own (checks/infra/pki.py), which the runbooks'
renewal uses against any target; the sandbox builds its PKI from them.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ...checks.infra.pki import CURVE, fingerprint, issue, openssl, run_openssl

__all__ = ["fingerprint", "issue", "load_pair", "make_ca", "openssl", "serve_tls"]

CA_SUBJECT = "/O=KFM Sandbox/CN=KFM Sandbox Internal CA"
HANDSHAKE_TIMEOUT_S = 15.0


def make_ca(folder: Path, days: int = 3650) -> tuple[Path, Path]:
    """An internal CA (certificate, key) in `folder`; kept when it already exists."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    cert, key = folder / "ca.crt", folder / "ca.key"
    if cert.is_file() and key.is_file():
        return cert, key
    run_openssl(
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
