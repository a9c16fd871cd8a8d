"""ZMTP CURVE (RFC 25 over RFC 26 CurveZMQ), sans-IO, with PyNaCl (``sockwire[curve]``).

Two :class:`~sockwire.zmtp.Mechanism` classes for :class:`~sockwire.zmtp.Connection`:
:class:`CurveClient` (our permanent key pair and the server's public key) and
:class:`CurveServer` (our permanent key pair and, optionally, the client
public keys it admits). The handshake is RFC 26's HELLO, WELCOME, INITIATE,
READY; every frame after it travels as a MESSAGE command, a box of one flags
byte (bit 0 MORE, bit 1 COMMAND, as libzmq writes them) and the frame.

Nonces: short nonces count up from 1 per direction and must strictly
increase on receipt (a replayed or reordered box closes the connection);
long nonces are 16 random bytes. Each connection makes its own transient
key pair and cookie key, and forgets the cookie key once INITIATE is in.

Keys are 32 bytes; files and the CLI spell them in Z85 (40 characters),
as libzmq and pyzmq do (:func:`z85_encode`, :func:`z85_decode`,
:func:`load_key_file`).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from .errors import AddressError, BadFrame, PermissionDenied, ProtocolError
from .zmtp import COMMAND, MORE, Mechanism, decode_metadata, encode_command

if TYPE_CHECKING:
    from .zmq.endpoint import ZmqEndpoint

__all__ = [
    "CurveClient",
    "CurveServer",
    "factory_from",
    "generate_keypair",
    "load_key_file",
    "public_from_secret",
    "z85_decode",
    "z85_encode",
]

_Z85 = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
_Z85_INDEX = {c: i for i, c in enumerate(_Z85)}
_U64 = struct.Struct("!Q")
_BOX_FLAG_MORE, _BOX_FLAG_COMMAND = 0x01, 0x02


def z85_encode(data: bytes) -> bytes:
    """ZeroMQ's Z85 (RFC 32): 4 bytes -> 5 printable characters."""
    if len(data) % 4:
        raise ValueError("Z85 encodes a multiple of 4 bytes")
    out = bytearray()
    for (value,) in struct.iter_unpack("!I", data):
        chunk = []
        rest = value
        for _ in range(5):
            rest, digit = divmod(rest, 85)
            chunk.append(_Z85[digit])
        out += bytes(reversed(chunk))
    return bytes(out)


def z85_decode(text: bytes | str) -> bytes:
    raw = text.encode("ascii") if isinstance(text, str) else text
    if len(raw) % 5:
        raise ValueError("Z85 text is a multiple of 5 characters")
    out = bytearray()
    for i in range(0, len(raw), 5):
        value = 0
        for c in raw[i : i + 5]:
            if c not in _Z85_INDEX:
                raise ValueError(f"{chr(c)!r} is not a Z85 character")
            value = value * 85 + _Z85_INDEX[c]
        if value > 0xFFFFFFFF:
            raise ValueError("Z85 group out of range")
        out += struct.pack("!I", value)
    return bytes(out)


def generate_keypair() -> tuple[bytes, bytes]:
    """(public, secret), each 40 Z85 characters."""
    secret = PrivateKey.generate()
    return z85_encode(bytes(secret.public_key)), z85_encode(bytes(secret))


def public_from_secret(secret: bytes) -> bytes:
    return bytes(PrivateKey(secret).public_key)


def _key(text: bytes, what: str) -> bytes:
    text = text.strip()
    if len(text) == 32:
        return text
    try:
        key = z85_decode(text)
    except ValueError as exc:
        raise AddressError(f"{what} is not a CURVE key", f"40 Z85 characters: {exc}") from None
    if len(key) != 32:
        raise AddressError(f"{what} is not a CURVE key", "a key is 40 Z85 characters")
    return key


def load_key_file(data: bytes, what: str, *, secret: bool) -> bytes:
    """A key from a file's bytes: a bare Z85 key, or a zcert (pyzmq/czmq certificate)."""
    field = b"secret-key" if secret else b"public-key"
    match = re.search(rb"^\s*" + field + rb'\s*=\s*"([^"]*)"', data, re.MULTILINE)
    if match:
        return _key(match.group(1), what)
    lines = [ln for ln in data.splitlines() if ln.strip() and not ln.lstrip().startswith(b"#")]
    if len(lines) != 1:
        raise AddressError(
            f"{what}: no {field.decode()} found",
            "the file holds one Z85 key, or a zcert with " + field.decode() + ' = "..."',
        )
    return _key(lines[0], what)


# --------------------------------------------------------------------------


class _Curve(Mechanism):
    name = b"CURVE"
    encrypts = True
    _send_prefix = b""
    _recv_prefix = b""

    def __init__(self, public: bytes, secret: bytes) -> None:
        super().__init__()
        self._public = public
        self._secret = PrivateKey(secret)
        self._transient = PrivateKey.generate()
        self._box: Box | None = None  # transient <-> transient, after the handshake
        self._send_nonce = 0
        self._recv_nonce = 0

    def _next_nonce(self) -> bytes:
        self._send_nonce += 1
        return _U64.pack(self._send_nonce)

    def _check_nonce(self, short: bytes) -> None:
        (value,) = _U64.unpack(short)
        if value <= self._recv_nonce:
            raise ProtocolError("CURVE short nonce not increasing", "a replayed or reordered box")
        self._recv_nonce = value

    def wrap(self, flags: int, body: bytes) -> bytes:
        assert self._box is not None
        box_flags = (_BOX_FLAG_MORE if flags & MORE else 0) | (
            _BOX_FLAG_COMMAND if flags & COMMAND else 0
        )
        short = self._next_nonce()
        sealed = self._box.encrypt(bytes((box_flags,)) + body, self._send_prefix + short)
        return b"\x07MESSAGE" + short + sealed.ciphertext

    def unwrap(self, body: bytes) -> tuple[int, bytes]:
        if body[:8] != b"\x07MESSAGE" or len(body) < 8 + 8 + 17:
            if body[:6] == b"\x05ERROR":
                raise ProtocolError(
                    "CURVE peer sent ERROR",
                    body[7 : 7 + body[6]].decode("ascii", "replace") if len(body) > 6 else "",
                )
            raise BadFrame("CURVE traffic that is not a MESSAGE", "every frame is boxed")
        short = body[8:16]
        self._check_nonce(short)
        assert self._box is not None
        try:
            plain = self._box.decrypt(body[16:], self._recv_prefix + short)
        except CryptoError:
            raise ProtocolError(
                "CURVE MESSAGE box does not open", "tampered or wrong keys"
            ) from None
        box_flags = plain[0]
        flags = (MORE if box_flags & _BOX_FLAG_MORE else 0) | (
            COMMAND if box_flags & _BOX_FLAG_COMMAND else 0
        )
        return flags, plain[1:]

    def _open(self, box: Box, data: bytes, nonce: bytes, what: str) -> bytes:
        try:
            return box.decrypt(data, nonce)
        except CryptoError:
            raise PermissionDenied(
                f"CURVE {what} box does not open",
                "the keys do not match (server key? client key?)",
            ) from None


class CurveClient(_Curve):
    """The connecting side: knows the server's public key (32 bytes)."""

    _send_prefix = b"CurveZMQMESSAGEC"
    _recv_prefix = b"CurveZMQMESSAGES"

    def __init__(self, public: bytes, secret: bytes, server: bytes) -> None:
        super().__init__(public, secret)
        self._server = PublicKey(server)
        self._server_raw = server
        self._step = "welcome"

    def start(self, metadata: bytes) -> list[bytes]:
        super().start(metadata)
        short = self._next_nonce()
        box = Box(self._transient, self._server)
        signature = box.encrypt(bytes(64), b"CurveZMQHELLO---" + short).ciphertext
        body = b"\x01\x00" + bytes(72) + bytes(self._transient.public_key) + short + signature
        return [encode_command(b"HELLO", body)]

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        if self._step == "welcome" and name == b"WELCOME":
            if len(data) != 160:
                raise BadFrame("CURVE WELCOME of the wrong size", "it is 160 bytes")
            plain = self._open(
                Box(self._transient, self._server), data[16:], b"WELCOME-" + data[:16], "WELCOME"
            )
            server_transient, cookie = PublicKey(plain[:32]), plain[32:128]
            self._box = Box(self._transient, server_transient)
            long_nonce = os.urandom(16)
            vouch_box = Box(self._secret, server_transient).encrypt(
                bytes(self._transient.public_key) + self._server_raw, b"VOUCH---" + long_nonce
            )
            vouch = long_nonce + vouch_box.ciphertext
            short = self._next_nonce()
            sealed = self._box.encrypt(
                self._public + vouch + self._metadata, b"CurveZMQINITIATE" + short
            )
            self._step = "ready"
            return [encode_command(b"INITIATE", cookie + short + sealed.ciphertext)]
        if self._step == "ready" and name == b"READY":
            assert self._box is not None
            if len(data) < 8 + 16:
                raise BadFrame("CURVE READY too short", "a nonce and a box")
            self._check_nonce(data[:8])
            plain = self._open(self._box, data[8:], b"CurveZMQREADY---" + data[:8], "READY")
            self.peer_metadata = decode_metadata(plain)
            self.done = True
            return []
        raise self._unexpected(name)


class CurveServer(_Curve):
    """The binding side: admits any client, or only ``allowed`` public keys."""

    as_server = True
    _send_prefix = b"CurveZMQMESSAGES"
    _recv_prefix = b"CurveZMQMESSAGEC"

    def __init__(
        self, public: bytes, secret: bytes, allowed: Collection[bytes] | None = None
    ) -> None:
        super().__init__(public, secret)
        self._allowed = allowed
        self._cookie_key: bytes | None = os.urandom(32)
        self._client_transient: PublicKey | None = None
        self._step = "hello"

    def on_command(self, name: bytes, data: bytes) -> list[bytes]:
        if self._step == "hello" and name == b"HELLO":
            if len(data) != 194 or data[:2] != b"\x01\x00":
                raise BadFrame("CURVE HELLO malformed", "version 1.0 and 194 bytes of body")
            client_transient = PublicKey(data[74:106])
            short = data[106:114]
            self._check_nonce(short)
            signature = self._open(
                Box(self._secret, client_transient),
                data[114:],
                b"CurveZMQHELLO---" + short,
                "HELLO",
            )
            if signature != bytes(64):
                raise PermissionDenied("CURVE HELLO signature wrong", "not 64 zero bytes")
            self._client_transient = client_transient
            from nacl.secret import SecretBox

            assert self._cookie_key is not None
            cookie_nonce = os.urandom(16)
            cookie_box = SecretBox(self._cookie_key).encrypt(
                bytes(client_transient) + bytes(self._transient), b"COOKIE--" + cookie_nonce
            )
            cookie = cookie_nonce + cookie_box.ciphertext
            welcome_nonce = os.urandom(16)
            sealed = Box(self._secret, client_transient).encrypt(
                bytes(self._transient.public_key) + cookie, b"WELCOME-" + welcome_nonce
            )
            self._step = "initiate"
            return [encode_command(b"WELCOME", welcome_nonce + sealed.ciphertext)]
        if self._step == "initiate" and name == b"INITIATE":
            if len(data) < 96 + 8 + 128 + 16:
                raise BadFrame("CURVE INITIATE too short", "cookie, nonce and a box")
            from nacl.secret import SecretBox

            assert self._cookie_key is not None
            assert self._client_transient is not None
            cookie = data[:96]
            try:
                opened = SecretBox(self._cookie_key).decrypt(
                    cookie[16:], b"COOKIE--" + cookie[:16]
                )
            except CryptoError:
                raise PermissionDenied("CURVE cookie does not open", "not our cookie") from None
            self._cookie_key = None  # forgotten once used
            if opened[:32] != bytes(self._client_transient) or opened[32:] != bytes(
                self._transient
            ):
                raise PermissionDenied("CURVE cookie for another connection", "replayed")
            short = data[96:104]
            self._check_nonce(short)
            self._box = Box(self._transient, self._client_transient)
            plain = self._open(self._box, data[104:], b"CurveZMQINITIATE" + short, "INITIATE")
            client_public, vouch, metadata = plain[:32], plain[32:128], plain[128:]
            vouched = self._open(
                Box(self._transient, PublicKey(client_public)),
                vouch[16:],
                b"VOUCH---" + vouch[:16],
                "vouch",
            )
            if vouched[:32] != bytes(self._client_transient) or vouched[32:] != self._public:
                raise PermissionDenied("CURVE vouch does not match", "a replayed INITIATE")
            if self._allowed is not None and client_public not in self._allowed:
                raise PermissionDenied(
                    f"CURVE client key {z85_encode(client_public).decode()} not allowed",
                    "add it to curve_clients=",
                )
            self.user = z85_encode(client_public).decode()
            self.peer_metadata = decode_metadata(metadata)
            self.done = True
            short = self._next_nonce()
            sealed = self._box.encrypt(self._metadata, b"CurveZMQREADY---" + short)
            return [encode_command(b"READY", short + sealed.ciphertext)]
        raise self._unexpected(name)


def factory_from(
    ep: ZmqEndpoint,
    role: Callable[[bool], bool],
    read: Callable[..., bytes],
) -> Callable[[bool], Mechanism]:
    """The CURVE mechanism factory for an endpoint's ``curve_*`` file options."""
    secret_file = ep.option("curve_secret")
    if not secret_file:
        raise AddressError(
            f"CURVE without curve_secret= in {ep.display()}",
            "name the file with our secret key (make one with `sockwire zmq-keygen`"
            " or zmq.auth.create_certificates)",
        )
    secret = load_key_file(read(secret_file, "curve_secret"), "curve_secret", secret=True)
    public = public_from_secret(secret)
    server_file = ep.option("curve_server")
    server = (
        load_key_file(
            read(server_file, "curve_server", private=False), "curve_server", secret=False
        )
        if server_file
        else None
    )
    clients_file = ep.option("curve_clients")
    allowed: set[bytes] | None = None
    if clients_file:
        text = read(clients_file, "curve_clients", private=False)
        allowed = {
            _key(line, "curve_clients")
            for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith(b"#")
        }

    def make(bound: bool) -> Mechanism:
        if role(bound):
            return CurveServer(public, secret, allowed)
        if server is None:
            raise AddressError(
                f"CURVE client without curve_server= in {ep.display()}",
                "name the file with the server's public key",
            )
        return CurveClient(public, secret, server)

    if not role(True) and server is None and not ep.bind:
        make(False)  # a client needs the server key: say so at connect time
    return make
