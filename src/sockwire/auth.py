"""The shared-key HMAC-SHA256 challenge handshake, sans-IO, and its blocking driver.

Both ends hold the same secret key (a file named by ``?authfile=``). Each
side sends a fresh random challenge and proves the key by MACing *both*
challenges under its own role label, so:

* a recorded exchange cannot be replayed (the other side's challenge is new
  every time, and the old proof does not cover it);
* a proof cannot be reflected back (a server proof is labelled ``server``
  and is never a valid client proof, nor the other way round);
* the key never travels, and wrong keys are detected by both sides.

The bytes exactly (docs/PROTOCOL.md, section 6)::

    client -> server  HELLO      "SWAH" | version (1) | client challenge (32)     37 bytes
    server -> client  CHALLENGE  "SWAH" | version (1) | server challenge (32)
                                 | server proof (32)                               69 bytes
    client -> server  PROOF      client proof (32)                                 32 bytes
    server -> client  VERDICT    0x00 accepted | 0x01 refused                       1 byte

    server proof = HMAC-SHA256(key, b"sockwire-auth v1 server" | client ch. | server ch.)
    client proof = HMAC-SHA256(key, b"sockwire-auth v1 client" | client ch. | server ch.)

The server reads 69 bytes before it succeeds (the bound is 256,
:data:`SERVER_READ_LIMIT`); a peer that sends garbage is refused at the
first wrong byte, and one that sends more than the step it is in allows is
refused too. Proofs are compared with :func:`hmac.compare_digest`.

State rules (the machines below enforce them; a driver only moves bytes)::

    ClientHandshake
    state        event                              next         output / error
    -----------  ---------------------------------  -----------  -----------------------------
    START        start()                            HELLO_SENT   HELLO (37 bytes)
    HELLO_SENT   bytes of CHALLENGE (< 69 in all)   HELLO_SENT   nothing yet
    HELLO_SENT   a byte off "SWAH"                  FAILED       ProtocolError
    HELLO_SENT   version byte != 1                  FAILED       ProtocolError (names both)
    HELLO_SENT   CHALLENGE whole, server proof ok   PROOF_SENT   PROOF (32 bytes)
    HELLO_SENT   CHALLENGE whole, proof wrong       FAILED       PermissionDenied (keys differ)
    PROOF_SENT   0x00                               DONE         authenticated
    PROOF_SENT   0x01                               FAILED       PermissionDenied
    PROOF_SENT   any other byte                     FAILED       ProtocolError

    ServerHandshake
    state        event                              next         output / error
    -----------  ---------------------------------  -----------  -----------------------------
    HELLO_WAIT   bytes of HELLO (< 37 in all)       HELLO_WAIT   nothing yet
    HELLO_WAIT   a byte off "SWAH"                  FAILED       ProtocolError
    HELLO_WAIT   version byte != 1                  FAILED       ProtocolError; farewell
                                                                 "SWAH" | 0x01 (our version)
    HELLO_WAIT   HELLO whole                        PROOF_WAIT   CHALLENGE (69 bytes)
    PROOF_WAIT   bytes of PROOF (< 32)              PROOF_WAIT   nothing yet
    PROOF_WAIT   PROOF whole, proof ok              DONE         VERDICT 0x00
    PROOF_WAIT   PROOF whole, proof wrong           FAILED       PermissionDenied; farewell 0x01

    both
    any waiting  more bytes than the step needs     FAILED       ProtocolError
    any waiting  SEQPACKET: a packet that is not    FAILED       ProtocolError
                 exactly the whole message
                 (receive_packet)
    any waiting  EOF (b"")                          FAILED       ConnectionLost
    DONE         receive()                          DONE         InvalidOperation (not ours)
    FAILED       anything                           FAILED       the same error again

``farewell`` is what a failed machine would like the peer to see before the
connection closes (best effort; never secret). The handshake authenticates
the *start* of a connection, not the bytes after it: run it inside TLS
(``tls+tcp://...?authfile=``) when the path between the hosts is not trusted.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import socket
import stat
import sys
import time
from hashlib import sha256

from . import trace
from .errors import (
    AddressError,
    ConnectionLost,
    InvalidOperation,
    NotFound,
    PermissionDenied,
    ProtocolError,
    SockwireError,
    TimeoutError,
    translate,
)
from .sock import Socket

__all__ = [
    "CHALLENGE_SIZE",
    "MAX_KEY_SIZE",
    "MIN_KEY_SIZE",
    "SERVER_READ_LIMIT",
    "VERSION",
    "ClientHandshake",
    "ServerHandshake",
    "client_handshake",
    "load_key",
    "server_handshake",
]

log = logging.getLogger("sockwire")

# ---- wire constants (docs/PROTOCOL.md section 6)
MAGIC = b"SWAH"
VERSION = 1
CHALLENGE_SIZE = 32
PROOF_SIZE = 32  # HMAC-SHA256
HELLO_SIZE = len(MAGIC) + 1 + CHALLENGE_SIZE  # 37
SERVER_HELLO_SIZE = HELLO_SIZE + PROOF_SIZE  # 69
ACCEPTED = b"\x00"
REFUSED = b"\x01"
CLIENT_LABEL = b"sockwire-auth v1 client"
SERVER_LABEL = b"sockwire-auth v1 server"
#: The most a server reads from an unauthenticated peer (it needs 69).
SERVER_READ_LIMIT = 256

#: Key files: at least 16 bytes (after trailing CR/LF are removed), at most 4 KiB.
MIN_KEY_SIZE = 16
MAX_KEY_SIZE = 4096

assert HELLO_SIZE + PROOF_SIZE <= SERVER_READ_LIMIT


def proof(key: bytes, label: bytes, client_challenge: bytes, server_challenge: bytes) -> bytes:
    """HMAC-SHA256(key, label | client challenge | server challenge)."""
    return hmac.new(key, label + client_challenge + server_challenge, sha256).digest()


class State:
    """The states of the two tables at the top of this module."""

    START = "START"
    HELLO_SENT = "HELLO_SENT"
    PROOF_SENT = "PROOF_SENT"
    HELLO_WAIT = "HELLO_WAIT"
    PROOF_WAIT = "PROOF_WAIT"
    DONE = "DONE"
    FAILED = "FAILED"


class _Machine:
    """What both sides share: the receive buffer, the failure rule, the byte counts."""

    role = ""

    def __init__(self, key: bytes, challenge: bytes | None) -> None:
        if not isinstance(key, bytes) or len(key) < MIN_KEY_SIZE:
            # never show the key itself, not even its length: only the rule
            raise InvalidOperation(
                f"the {self.role} handshake key",
                f"a key is bytes, at least {MIN_KEY_SIZE} of them (use load_key)",
            )
        if challenge is None:
            challenge = secrets.token_bytes(CHALLENGE_SIZE)
        elif len(challenge) != CHALLENGE_SIZE:
            raise InvalidOperation(
                f"a {len(challenge)}-byte challenge", f"a challenge is {CHALLENGE_SIZE} bytes"
            )
        self._key = key
        self.challenge = challenge
        self.state = State.START
        self.error: SockwireError | None = None
        self.farewell = b""
        #: every byte accepted from the peer so far
        self.consumed = 0
        self._buf = b""
        self._need = 0  # size of the message being received (0: none)

    def __repr__(self) -> str:  # the key is never shown
        return f"<{type(self).__name__} {self.state} consumed={self.consumed}>"

    @property
    def done(self) -> bool:
        """True once both sides proved the key (the connection is authenticated)."""
        return self.state == State.DONE

    def wanted(self) -> int:
        """Bytes still missing from the message this side waits for (0: not waiting).

        A driver reads at most this many, so it never consumes a byte that
        belongs to what follows the handshake.
        """
        return self._need - len(self._buf) if self._need else 0

    def _fail(self, error: SockwireError, farewell: bytes = b"") -> SockwireError:
        self.state = State.FAILED
        self.error = error
        self.farewell = farewell
        self._need = 0
        return error

    def _take(self, data: bytes) -> bytes | None:
        """Add ``data`` to the message in progress; the whole message, or None for more."""
        if self.error is not None:
            raise self.error
        if not self._need:
            raise InvalidOperation(
                f"receive() on a {self.role} handshake in state {self.state}",
                "after DONE the bytes belong to the application, not the handshake",
            )
        if not data:
            raise self._fail(
                ConnectionLost(
                    f"the peer closed the connection during the {self.role} auth handshake",
                    f"after {self.consumed} bytes; does it expect ?authfile= too, and the "
                    "same key? (its log says why)",
                )
            )
        data = bytes(data)  # a bytearray or memoryview from a driver; bytes stay as they are
        if len(data) > self.wanted():
            raise self._fail(
                ProtocolError(
                    f"{len(data)} bytes in the {self.role} auth handshake's {self.state} step",
                    f"the step allows {self.wanted()} more; the peer does not follow the "
                    "sockwire auth protocol",
                )
            )
        self.consumed += len(data)
        buf = self._buf + data
        self._check_prefix(buf)
        if len(buf) < self._need:
            self._buf = buf
            return None
        self._buf = b""
        self._need = 0
        return buf

    def receive(self, data: bytes) -> bytes:
        """Bytes from the peer (``b""``: EOF); the bytes to send back (maybe none)."""
        raise NotImplementedError

    def receive_packet(self, data: bytes, size: int | None = None) -> bytes:
        """One whole SEQPACKET packet (``size``: its real length, MSG_TRUNC); as ``receive``.

        On SEQPACKET each handshake message is exactly one packet
        (docs/PROTOCOL.md 6.2): a message split over several packets, or a
        packet with bytes after the message, is refused (ProtocolError),
        after the magic and version checks so that a stranger still hears
        what it is. A 0-byte read is EOF.
        """
        length = len(data) if size is None else size
        if not data or self.error is not None or not self._need:
            return self.receive(data)  # EOF, an earlier failure, or not waiting
        wanted = self.wanted()
        if self._buf or length != wanted:
            self._check_prefix((self._buf + bytes(data))[: self._need])
            raise self._fail(
                ProtocolError(
                    f"a {length}-byte packet in the {self.role} auth handshake's "
                    f"{self.state} step",
                    f"on SEQPACKET each handshake message is one packet of exactly {wanted} "
                    "bytes; the peer does not follow the sockwire auth protocol",
                ),
            )
        return self.receive(data)

    def _check_prefix(self, buf: bytes) -> None:
        """Refuse a wrong magic or version at the first wrong byte."""

    def _check_magic(self, buf: bytes, peer: str) -> None:
        head = buf[: len(MAGIC)]
        if head != MAGIC[: len(head)]:
            raise self._fail(
                ProtocolError(
                    f"the {peer} is not speaking the sockwire auth handshake",
                    f"its first bytes are not {MAGIC!r}; does it expect ?authfile=, or TLS?",
                )
            )


class ClientHandshake(_Machine):
    """The connecting side. ``start()``, then feed what the server sends to ``receive``.

    ``challenge`` is for tests that need a known transcript; leave it None.
    """

    role = "client"

    def __init__(self, key: bytes, *, challenge: bytes | None = None) -> None:
        super().__init__(key, challenge)

    def start(self) -> bytes:
        """START -> HELLO_SENT: the HELLO to send."""
        if self.state != State.START:
            raise InvalidOperation("start() twice", "a handshake starts once")
        self.state = State.HELLO_SENT
        self._need = SERVER_HELLO_SIZE
        return MAGIC + bytes([VERSION]) + self.challenge

    def _check_prefix(self, buf: bytes) -> None:
        if self.state != State.HELLO_SENT:
            return
        self._check_magic(buf, "server")
        if len(buf) > len(MAGIC) and buf[len(MAGIC)] != VERSION:
            raise self._fail(
                ProtocolError(
                    f"the server speaks sockwire auth version {buf[len(MAGIC)]}",
                    f"this client speaks version {VERSION}; upgrade the older side",
                )
            )

    def receive(self, data: bytes) -> bytes:
        """Bytes from the server (``b""``: EOF); returns the bytes to send (maybe none)."""
        message = self._take(data)
        if message is None:
            return b""
        if self.state == State.HELLO_SENT:
            start = len(MAGIC) + 1
            server_challenge = message[start : start + CHALLENGE_SIZE]
            their_proof = message[start + CHALLENGE_SIZE :]
            expected = proof(self._key, SERVER_LABEL, self.challenge, server_challenge)
            if not hmac.compare_digest(their_proof, expected):
                raise self._fail(
                    PermissionDenied(
                        "the server failed the auth handshake",
                        "its proof does not match our key: the two key files differ "
                        "(or this is not the server you meant)",
                    )
                )
            self.state = State.PROOF_SENT
            self._need = 1
            return proof(self._key, CLIENT_LABEL, self.challenge, server_challenge)
        # PROOF_SENT: the verdict
        if message == ACCEPTED:
            self.state = State.DONE
            return b""
        if message == REFUSED:
            raise self._fail(
                PermissionDenied(
                    "the server refused our auth proof",
                    "the key files differ, or the server's policy refused us",
                )
            )
        raise self._fail(
            ProtocolError(
                f"auth verdict byte 0x{message[0]:02x}",
                "a sockwire server answers 0x00 (accepted) or 0x01 (refused)",
            )
        )


class ServerHandshake(_Machine):
    """The accepting side: feed what the client sends to ``receive``; send what it returns.

    It never accepts more than the step it is in needs, so at most
    :data:`SERVER_READ_LIMIT` bytes (in fact 69) are read before it succeeds.
    """

    role = "server"

    def __init__(self, key: bytes, *, challenge: bytes | None = None) -> None:
        super().__init__(key, challenge)
        self.state = State.HELLO_WAIT
        self._need = HELLO_SIZE
        self._client_challenge = b""

    def _check_prefix(self, buf: bytes) -> None:
        if self.state != State.HELLO_WAIT:
            return
        self._check_magic(buf, "client")
        if len(buf) > len(MAGIC) and buf[len(MAGIC)] != VERSION:
            raise self._fail(
                ProtocolError(
                    f"the client speaks sockwire auth version {buf[len(MAGIC)]}",
                    f"this server speaks version {VERSION}; upgrade the older side",
                ),
                farewell=MAGIC + bytes([VERSION]),
            )

    def receive(self, data: bytes) -> bytes:
        """Bytes from the client (``b""``: EOF); returns the bytes to send (maybe none)."""
        message = self._take(data)
        if message is None:
            return b""
        if self.state == State.HELLO_WAIT:
            self._client_challenge = message[len(MAGIC) + 1 :]
            self.state = State.PROOF_WAIT
            self._need = PROOF_SIZE
            ours = proof(self._key, SERVER_LABEL, self._client_challenge, self.challenge)
            return MAGIC + bytes([VERSION]) + self.challenge + ours
        # PROOF_WAIT
        expected = proof(self._key, CLIENT_LABEL, self._client_challenge, self.challenge)
        if not hmac.compare_digest(message, expected):
            raise self._fail(
                PermissionDenied(
                    "the client failed the auth handshake",
                    "its proof does not match our key: the key files differ, or the bytes "
                    "were recorded or reflected from another connection",
                ),
                farewell=REFUSED,
            )
        self.state = State.DONE
        return ACCEPTED


# --------------------------------------------------------------------------
# Key files
# --------------------------------------------------------------------------


def load_key(path: str | os.PathLike[str]) -> bytes:
    """The shared key in the file at ``path``, refusing files others may read or change.

    The key is the file's bytes without trailing CR/LF bytes (so ``openssl
    rand -hex 32 > key`` works), at least :data:`MIN_KEY_SIZE` and at most
    :data:`MAX_KEY_SIZE` bytes. Like ssh with private keys, a file with any
    group or other permission bit, or owned by another user than us or
    root, is refused. Symlinks are followed (the checks apply to the file).
    Errors name the path, never the contents.
    """
    name = os.fspath(path)
    what = f"authfile {name}"
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
    except FileNotFoundError as exc:
        raise NotFound(
            what,
            "no such key file; make one with `(umask 077; head -c 32 /dev/urandom > FILE)` "
            "and give both ends a copy",
            errno=exc.errno,
        ) from None
    except PermissionError as exc:
        raise PermissionDenied(
            what, "this process may not read the key file; check its owner", errno=exc.errno
        ) from None
    except OSError as exc:
        raise translate(exc, "open", what) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise AddressError(
                f"{what} is not a regular file", "authfile= names a file holding the key"
            )
        if info.st_mode & 0o077:
            raise PermissionDenied(
                f"{what} has mode {stat.S_IMODE(info.st_mode):04o}",
                f"group or others may read or change the key; run `chmod 600 {name}`",
            )
        if info.st_uid not in (os.geteuid(), 0):
            raise PermissionDenied(
                f"{what} belongs to uid {info.st_uid}",
                "another user could change the key; the file must belong to this user or root",
            )
        chunks = []
        size = 0
        while size <= MAX_KEY_SIZE:
            chunk = os.read(fd, MAX_KEY_SIZE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > MAX_KEY_SIZE:
        raise AddressError(
            f"{what} holds more than {MAX_KEY_SIZE} bytes",
            "a key file holds one key (32 random bytes is plenty); is this the right file?",
        )
    key = raw.rstrip(b"\r\n")
    if len(key) < MIN_KEY_SIZE:
        raise AddressError(
            f"{what} holds a key shorter than {MIN_KEY_SIZE} bytes" if key else f"{what} is empty",
            "use 32 random bytes: `(umask 077; head -c 32 /dev/urandom > FILE)`",
        )
    return key


# --------------------------------------------------------------------------
# The blocking driver
# --------------------------------------------------------------------------


def _is_tls(raw: object) -> bool:
    ssl = sys.modules.get("ssl")  # no SSLSocket can exist unless ssl was imported
    return ssl is not None and isinstance(raw, ssl.SSLSocket)


def _drive(
    machine: ClientHandshake | ServerHandshake,
    sock: Socket,
    first: bytes,
    timeout: float,
    label: str,
) -> None:
    raw = sock.raw
    flags = 0 if _is_tls(raw) else socket.MSG_NOSIGNAL  # ssl refuses flags
    packets = sock.type == socket.SOCK_SEQPACKET  # one handshake message per packet
    buf = bytearray(SERVER_HELLO_SIZE)  # the largest message of either side
    deadline = time.monotonic() + timeout
    where = f"{machine.role} auth handshake with {label}"

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(where, f"the peer did not finish it within {round(timeout, 2):g} s")
        return remaining

    previous = raw.gettimeout()
    try:
        out = first
        try:
            while True:
                if out:
                    raw.settimeout(left())
                    raw.sendall(out, flags)
                    trace.note(
                        "auth", machine.role, f"sent {len(out)} bytes", result=machine.state
                    )
                if machine.done:
                    return
                raw.settimeout(left())
                if packets:
                    # MSG_TRUNC: the packet's real length, so trailing junk is seen
                    want = machine.wanted()
                    size = raw.recv_into(buf, want, socket.MSG_TRUNC)
                    out = machine.receive_packet(bytes(buf[: min(size, want)]), size)
                else:
                    out = machine.receive(raw.recv(machine.wanted()))
        except SockwireError as exc:
            trace.note("auth", machine.role, "failed", result=type(exc).__name__)
            if machine.farewell:
                _say_farewell(raw, machine.farewell, flags)
            raise
        except OSError as exc:
            error = translate(exc, "auth handshake", label)
            if isinstance(error, TimeoutError):
                error = TimeoutError(
                    where, f"the peer did not finish it within {round(timeout, 2):g} s"
                )
            raise error from exc
    finally:
        if not sock.closed:
            try:
                raw.settimeout(previous)
            except OSError:
                log.debug("restoring the timeout of %s failed", label, exc_info=True)


def _say_farewell(raw: socket.socket, data: bytes, flags: int) -> None:
    """Best effort, never blocking: the peer learns why before the close."""
    try:
        raw.settimeout(0.0)
        raw.send(data, flags)
    except OSError:
        log.debug("could not send the auth farewell", exc_info=True)


def client_handshake(
    sock: Socket,
    key: bytes,
    *,
    timeout: float = 10.0,
    label: str | None = None,
    challenge: bytes | None = None,
) -> None:
    """Prove ``key`` to the server on ``sock`` and check its proof; raise unless both hold.

    PermissionDenied: the keys differ. ProtocolError: the peer does not
    speak this handshake. TimeoutError: it took over ``timeout`` seconds in
    all. ConnectionLost: the server closed (its log says why).
    """
    machine = ClientHandshake(key, challenge=challenge)
    _drive(machine, sock, machine.start(), timeout, label or sock.label or f"fd {sock.fd}")


def server_handshake(
    sock: Socket,
    key: bytes,
    *,
    timeout: float = 10.0,
    label: str | None = None,
    challenge: bytes | None = None,
) -> None:
    """The accepting side of :func:`client_handshake` (same errors)."""
    machine = ServerHandshake(key, challenge=challenge)
    _drive(machine, sock, b"", timeout, label or sock.label or f"fd {sock.fd}")
