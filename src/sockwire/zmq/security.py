"""Which ZMTP mechanism a socket uses, built from its endpoint's options and files.

NULL unless the endpoint names a credentials file. Secrets are read from
files that only their owner may read (the rules of ``authfile=``: no group
or other permission bits, owned by us or root), never from the endpoint
string, and never printed.

- ``plain=FILE``: RFC 24 PLAIN. The server (by default the binding side)
  accepts any ``user:password`` line of FILE; a client sends the first line.
  PLAIN sends the password in clear text: use it only on a trusted network
  (loopback, a VPN), or use CURVE.
- ``curve_secret=FILE`` (+ ``curve_server=FILE`` on a client,
  ``curve_clients=FILE`` optionally on a server): RFC 25/26 CURVE, with
  the optional extra ``sockwire[curve]`` (PyNaCl).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import stat
from collections.abc import Callable

from .. import zmtp
from ..errors import AddressError, NotFound, PermissionDenied, UnsupportedError, translate
from .endpoint import ZmqEndpoint

__all__ = ["MAX_SECRET_FILE", "mechanism_factory", "read_secret_file"]

log = logging.getLogger("sockwire")

#: Credential and key files are small; a larger one is the wrong file.
MAX_SECRET_FILE = 64 * 1024


def read_secret_file(path: str, what: str, *, private: bool = True) -> bytes:
    """The bytes of a credentials/key file, refusing one others may read or change."""
    label = f"{what} {path}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError as exc:
        raise NotFound(label, "no such file", errno=exc.errno) from None
    except PermissionError as exc:
        raise PermissionDenied(label, "this process may not read it", errno=exc.errno) from None
    except OSError as exc:
        raise translate(exc, "open", label) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AddressError(f"{label} is not a regular file", f"{what}= names a file")
        if private and info.st_mode & 0o077:
            raise PermissionDenied(
                f"{label} has mode {stat.S_IMODE(info.st_mode):04o}",
                f"group or others may read or change it; run `chmod 600 {path}`",
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise PermissionDenied(
                f"{label} belongs to uid {info.st_uid}",
                "another user could change it; it must belong to this user or root",
            )
        data = os.read(fd, MAX_SECRET_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_FILE:
        raise AddressError(f"{label} is over {MAX_SECRET_FILE} bytes", "is this the right file?")
    return data


def _plain_lines(path: str) -> list[tuple[bytes, bytes]]:
    pairs = []
    for raw in read_secret_file(path, "plain").splitlines():
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user, sep, password = line.partition(b":")
        if not sep or not user or len(user) > 255 or len(password) > 255:
            raise AddressError(
                f"plain {path}: a line is not user:password",
                "one user:password a line (each at most 255 bytes)",
            )
        pairs.append((user, password))
    if not pairs:
        raise AddressError(f"plain {path} holds no user:password line", "add one")
    return pairs


def mechanism_factory(ep: ZmqEndpoint) -> Callable[[bool], zmtp.Mechanism]:
    """``factory(bound) -> Mechanism`` for each new connection of this endpoint.

    Files are read once, here, so a bad file fails at bind/connect time.
    """
    forced = ep.option("as_server")
    plain = ep.option("plain")
    secret = ep.option("curve_secret")
    if plain and secret:
        raise AddressError(
            f"both plain= and curve_secret= in {ep.display()}", "choose one mechanism"
        )

    def role(bound: bool) -> bool:
        return forced == "1" if forced is not None else bound

    if plain:
        if ep.transport == "tcp" and not _loopback(ep.target.host or ""):
            log.warning(
                "zmq PLAIN on %s: user name and password travel in clear text; "
                "use CURVE, or PLAIN only inside a VPN or tunnel",
                ep.display(),
            )
        pairs = _plain_lines(plain)
        table = dict(pairs)

        def check(user: bytes, password: bytes) -> bool:
            expected = table.get(user)
            return expected is not None and _same(expected, password)

        def make_plain(bound: bool) -> zmtp.Mechanism:
            if role(bound):
                return zmtp.PlainServer(check)
            return zmtp.PlainClient(*pairs[0])

        return make_plain
    if secret or ep.option("curve_server") or ep.option("curve_clients"):
        try:
            from ..zmtp_curve import factory_from
        except ImportError as exc:  # PyNaCl missing
            raise UnsupportedError(
                "ZMTP CURVE needs PyNaCl", "pip install 'sockwire[curve]'"
            ) from exc
        return factory_from(ep, role, read_secret_file)
    return lambda bound: zmtp.Null()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _same(a: bytes, b: bytes) -> bool:
    import hmac

    return hmac.compare_digest(a, b)
