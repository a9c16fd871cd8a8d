"""The error tree and the one translation point: every rule of the table, and real kernels."""

from __future__ import annotations

import builtins
import errno
import os
import socket
from pathlib import Path

import pytest

import sockwire
from sockwire import errors
from sockwire.errors import translate


@pytest.mark.parametrize("rule", errors._RULES, ids=lambda r: f"{errno.errorcode[r.errno]}")
def test_every_rule_of_the_table_translates(rule: errors._Rule) -> None:
    op = sorted(rule.ops)[0] if rule.ops else "frobnicate"
    original = OSError(rule.errno, os.strerror(rule.errno))
    err = translate(original, op, "/run/x.sock", family=rule.family, sock_type=rule.sock_type)
    assert err.__cause__ is original
    assert err.errno == rule.errno
    assert err.errno_name == errno.errorcode[rule.errno]
    # the first matching rule may be a more specific one for the same errno
    assert isinstance(err, errors.SockwireError)
    text = str(err)
    assert text.startswith(f"{op} /run/x.sock ({errno.errorcode[rule.errno]}): ")
    assert "\n" not in text
    assert len(err.hint) > 10


def test_specific_rules_win_over_general_ones() -> None:
    refused = translate(OSError(errno.ECONNREFUSED, "x"), "connect", "/s", family=socket.AF_UNIX)
    assert isinstance(refused, sockwire.ConnectionRefused)
    assert "stale" in refused.hint
    tcp = translate(OSError(errno.ECONNREFUSED, "x"), "connect", "h:1", family=socket.AF_INET)
    assert "nobody is listening" in tcp.hint
    proto = translate(OSError(errno.EPROTOTYPE, "x"), "connect", "/s", family=socket.AF_UNIX)
    assert "unix+seqpacket:" in proto.hint and "/s" in proto.hint


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.ECONNREFUSED, sockwire.ConnectionRefused),
        (errno.ENOENT, sockwire.NotFound),
        (errno.ENETUNREACH, sockwire.Unreachable),
        (errno.EADDRINUSE, sockwire.AddressInUse),
        (errno.ETIMEDOUT, sockwire.TimeoutError),
        (errno.EAGAIN, sockwire.WouldBlock),
        (errno.EBADF, sockwire.ClosedError),
        (errno.EPIPE, sockwire.ConnectionLost),
        (errno.ECONNRESET, sockwire.ConnectionLost),
        (errno.EACCES, sockwire.PermissionDenied),
        (errno.EMSGSIZE, sockwire.MessageTooLarge),
        (errno.EMFILE, sockwire.ResourceExhausted),
        (errno.EAFNOSUPPORT, sockwire.UnsupportedError),
        (errno.ENOTCONN, sockwire.InvalidOperation),
    ],
)
def test_classes_by_what_to_do(code: int, cls: type[Exception]) -> None:
    assert isinstance(translate(OSError(code, "x"), "op"), cls)


def test_builtin_compatibility() -> None:
    timeout = translate(builtins.TimeoutError("timed out"), "recv")
    assert isinstance(timeout, builtins.TimeoutError)
    assert isinstance(timeout, sockwire.TimeoutError)
    would = translate(OSError(errno.EAGAIN, "x"), "recv")
    assert isinstance(would, BlockingIOError)
    assert would.errno == errno.EAGAIN
    assert isinstance(sockwire.AddressError("x"), ValueError)


def test_unknown_errno_keeps_strerror() -> None:
    err = translate(OSError(errno.EXDEV, os.strerror(errno.EXDEV)), "link")
    assert type(err) is errors.SockwireError
    assert "EXDEV" in str(err)


def test_gaierror_is_not_found() -> None:
    err = translate(socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connect")
    assert isinstance(err, sockwire.NotFound)
    assert err.errno_name == "EAI_NONAME"


def test_sockwire_errors_pass_through() -> None:
    original = sockwire.ClosedError("x")
    assert translate(original, "op") is original


# ---- the same translations, from a real kernel --------------------------------------


def test_real_missing_socket_file(tmp_path: Path) -> None:
    with sockwire.Socket() as s, pytest.raises(sockwire.NotFound) as info:
        s.connect(str(tmp_path / "absent.sock"))
    assert "ENOENT" in str(info.value)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_real_wrong_type_hints_the_right_scheme(tmp_path: Path) -> None:
    path = str(tmp_path / "seq.sock")
    with sockwire.Socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as server:
        server.bind(path)
        server.listen(1)
        with sockwire.Socket() as client, pytest.raises(sockwire.ConnectError) as info:
            client.connect(path)
    message = str(info.value)
    assert "EPROTOTYPE" in message
    assert "unix+seqpacket:" in message
    assert path in message


def test_real_refused_stale_file(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    server = sockwire.Socket()
    server.bind(path)
    server.close()  # the file stays, nobody listens
    with sockwire.Socket() as client, pytest.raises(sockwire.ConnectionRefused) as info:
        client.connect(path)
    assert "stale" in str(info.value)


def test_real_address_in_use() -> None:
    with sockwire.Socket(socket.AF_INET) as first:
        first.bind(("127.0.0.1", 0))
        port = first.getsockname()[1]  # type: ignore[index]
        with sockwire.Socket(socket.AF_INET) as second, pytest.raises(sockwire.AddressInUse):
            second.bind(("127.0.0.1", port))
