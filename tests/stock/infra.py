"""Stock infrastructure for the infra runbooks: openssl s_server, pg_dump files, a tmpfs.

- `tls_server(cert, key)`: Debian's `openssl s_server` on a free loopback port serving a
  certificate made in the test (`make_pki`, `issue` with the `cryptography` package, dates
  relative to now: an expired, a 3-day or a 1-year certificate stays what it is on any
  date the suite runs). A child of the test process with a parent-death signal; always
  stopped.
- `pg_dump_custom` / `cron_dump_plain` / `truncate`: dump files of a stock cluster
  (tests/stock/postgres.py): `pg_dump -Fc --file`, a cron-style `pg_dump ... > file.sql`
  through a shell, and a dump cut in half.
- `small_tmpfs(folder)`: a real tmpfs of a few MiB mounted for the test (root only; the
  caller skips with the reason when mounting is not permitted), always unmounted.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kfm_runbooks._proc import guarded

DAY = dt.timedelta(days=1)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def make_pki(folder: Path) -> tuple[Path, Path]:
    """A CA valid from a year ago for ten years: (ca.crt, ca.key)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stock Test CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 365 * DAY)
        .not_valid_after(now + 3650 * DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    (folder / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "ca.key", key)
    return folder / "ca.crt", folder / "ca.key"


def issue(
    ca: tuple[Path, Path],
    folder: Path,
    *,
    valid_for: dt.timedelta,
    age: dt.timedelta = 30 * DAY,
    hostname: str = "localhost",
) -> tuple[Path, Path]:
    """A server certificate for `hostname` + 127.0.0.1, issued `age` ago and valid until
    now + `valid_for` (negative: expired that long ago)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_cert = x509.load_pem_x509_certificate(ca[0].read_bytes())
    ca_key = serialization.load_pem_private_key(ca[1].read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - age)
        .not_valid_after(now + valid_for)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (folder / "server.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / "server.key", key)
    return folder / "server.crt", folder / "server.key"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _handshakes(port: int) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def tls_server(cert: Path, key: Path, patience: float = 60) -> Iterator[str]:
    """`openssl s_server` serving the pair on loopback; yields its https URL."""
    openssl = shutil.which("openssl")
    assert openssl, "Debian's openssl is required for the stock TLS server"
    port = _free_port()
    argv = [openssl, "s_server", "-quiet", "-www", "-accept", f"127.0.0.1:{port}"]
    argv += ["-cert", str(cert), "-key", str(key)]
    process = subprocess.Popen(
        guarded(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + patience  # a hang guard, not a timing assumption
        while not _handshakes(port):
            assert process.poll() is None, "openssl s_server exited"
            assert time.monotonic() < deadline, "openssl s_server never answered"
            time.sleep(0.05)
        yield f"https://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pg_dump_custom(bin_dir: Path, dsn: str, dest: Path) -> Path:
    """`pg_dump -Fc --file=dest` (what a backup service runs)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(bin_dir / "pg_dump"), "-Fc", f"--file={dest}", dsn],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return dest


def cron_dump_plain(bin_dir: Path, dsn: str, folder: Path) -> Path:
    """What a plain crontab line does: `pg_dump "$DSN" > folder/kfm-<UTC stamp>.sql` through
    /bin/sh (the DSN in the environment, not on the command line)."""
    folder.mkdir(parents=True, exist_ok=True)
    line = f'pg_dump "$KFM_DSN" > {folder}/kfm-$(date -u +%Y%m%dT%H%M%SZ).sql'
    env = {**os.environ, "KFM_DSN": dsn, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    subprocess.run(["/bin/sh", "-c", line], check=True, env=env, timeout=300)
    [dump] = sorted(folder.glob("kfm-*.sql"))[-1:]
    return dump


def truncate(source: Path, dest: Path) -> Path:
    """A copy of `source` cut in half (a dump interrupted by a full disk or a killed job)."""
    data = source.read_bytes()
    dest.write_bytes(data[: len(data) // 2])
    return dest


def age(path: Path, hours: float) -> None:
    """Set a dump's modification time `hours` into the past."""
    stamp = time.time() - hours * 3600
    os.utime(path, (stamp, stamp))


@contextlib.contextmanager
def small_tmpfs(point: Path, size_mib: int = 4, inodes: int = 128) -> Iterator[Path]:
    """A tmpfs mounted at `point`; raises PermissionError (with the reason) when this
    process may not mount one. Always unmounted."""
    point.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        raise PermissionError("mounting a tmpfs needs root")
    done = subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={size_mib}m,nr_inodes={inodes},mode=0755",
            "kfm-stock-disk",
            str(point),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise PermissionError(done.stderr.strip() or "mount refused")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
