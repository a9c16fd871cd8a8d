"""Throwaway certificates for the TLS tests, made with the ``openssl`` command line.

Why the CLI and not the ``cryptography`` package: it is what a user runs to
make certificates (the README shows the same commands), it adds no Python
dependency, and ``.ci/run`` installs it (package ``openssl``) when missing.
EC P-256 keys: generating one takes milliseconds.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import need_tool

#: Addresses the server certificate holds (the multi-host test uses TEST-NET-2).
SERVER_IPS = ("127.0.0.1", "198.51.100.1")
SERVER_NAMES = ("localhost",)


@dataclass(frozen=True)
class Certs:
    ca: str  # the CA that signed server and client
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a CA that signed nothing here ("wrong CA")
    other_client_cert: str  # a client certificate signed by other_ca
    other_client_key: str


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=30
    )


def _ca(directory: Path, name: str) -> None:
    _openssl(
        "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
        "-subj", f"/CN=sockwire test {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip


def _leaf(directory: Path, name: str, ca: str, serial: int, extensions: str) -> None:
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
        cwd=directory,
    )  # fmt: skip
    (directory / f"{name}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
        "-set_serial", str(serial), "-days", "2", "-out", f"{name}.pem",
        "-extfile", f"{name}.ext",
        cwd=directory,
    )  # fmt: skip


def make_certs(directory: Path) -> Certs:
    """A CA, a server certificate (SAN: localhost, 127.0.0.1, 198.51.100.1), a client one."""
    need_tool("openssl")
    _ca(directory, "ca")
    _ca(directory, "other")
    sans = ",".join([f"IP:{ip}" for ip in SERVER_IPS] + [f"DNS:{n}" for n in SERVER_NAMES])
    _leaf(
        directory,
        "server",
        "ca",
        1,
        f"subjectAltName={sans}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n",
    )
    client_ext = "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n"
    _leaf(directory, "client", "ca", 2, client_ext)
    _leaf(directory, "stranger", "other", 3, client_ext)
    for key in directory.glob("*.key"):
        os.chmod(key, 0o600)
    d = str(directory)
    return Certs(
        ca=f"{d}/ca.pem",
        server_cert=f"{d}/server.pem",
        server_key=f"{d}/server.key",
        client_cert=f"{d}/client.pem",
        client_key=f"{d}/client.key",
        other_ca=f"{d}/other.pem",
        other_client_cert=f"{d}/stranger.pem",
        other_client_key=f"{d}/stranger.key",
    )


def server_query(certs: Certs, *, require_client: bool = False, **extra: str) -> str:
    """``certfile=...&keyfile=...`` (and ``cafile=`` for mutual TLS) for a listener."""
    parts = {"certfile": certs.server_cert, "keyfile": certs.server_key, **extra}
    if require_client:
        parts["cafile"] = certs.ca
    return "&".join(f"{k}={v}" for k, v in sorted(parts.items()))


def client_query(certs: Certs, *, cert: bool = False, **extra: str) -> str:
    """``cafile=...`` (and the client certificate with ``cert=True``) for a client."""
    parts = {"cafile": certs.ca, **extra}
    if cert:
        parts.update(certfile=certs.client_cert, keyfile=certs.client_key)
    return "&".join(f"{k}={v}" for k, v in sorted(parts.items()))


def write_key(path: Path, key: bytes = b"k" * 32, mode: int = 0o600) -> str:
    """A key file for ?authfile=, created with ``mode`` from the start."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, key)
    finally:
        os.close(fd)
    os.chmod(path, mode)  # O_CREAT's mode is masked by the umask
    return str(path)
