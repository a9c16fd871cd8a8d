"""secure.py: credentials, TLS and HMAC in front of a Channel; what counts as authenticated.

Also the issue's fault case: pickle bytes sent to a default server never execute.
"""

from __future__ import annotations

import builtins
import logging
import os
import pickle
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sockwire import dial, secure, trace
from sockwire.address import Endpoint, parse
from sockwire.channel import Channel
from sockwire.errors import (
    ConnectionLost,
    NotFound,
    PermissionDenied,
    ProtocolError,
    TimeoutError,
)
from sockwire.sock import Socket, socketpair
from tests.tls_helpers import Certs, client_query, make_certs, server_query, write_key

KEY = b"correct horse battery staple 0123456789"
WRONG = b"incorrect donkey battery staple 9876543"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


class Server:
    """Listen on ``url``; serve one connection: secure_server, a Channel, ``handler``."""

    def __init__(
        self, url: str, handler: Callable[[Channel], Any], *, codec: str = "bytes"
    ) -> None:
        self.ep = parse(url)
        self.listener = dial.listen(self.ep)
        self.listener.settimeout(10)
        self.handler = handler
        self.codec = codec
        self.error: BaseException | None = None
        self.result: Any = None
        self.authenticated: bool | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    @property
    def address(self) -> Endpoint:
        """The endpoint with the real port (tcp) and without the server-only options."""
        if self.ep.port == 0:
            port = self.listener.getsockname()[1]
            return parse(str(self.ep.without_options()).rsplit(":", 1)[0] + f":{port}")
        return self.ep.without_options()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            sock, self.authenticated = secure.secure_server(conn, self.ep, timeout=5)
            with Channel.from_socket(
                sock, authenticated=self.authenticated, codec=self.codec
            ) as channel:
                self.result = self.handler(channel)
        except BaseException as exc:
            self.error = exc

    def close(self) -> None:
        self.thread.join(timeout=20)
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(*args: Any, **kwargs: Any) -> Server:
        server = Server(*args, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def echo_once(channel: Channel) -> Any:
    message = channel.recv(timeout=10)
    channel.send(message)
    return message


def with_options(ep: Endpoint, **options: str) -> str:
    return str(ep.with_options(**options))


# ---- nothing asked: nothing done


def test_without_options_the_socket_comes_back_untouched() -> None:
    a, b = socketpair()
    with a, b:
        for fn in (secure.secure_client, secure.secure_server):
            sock, proven = fn(a, parse("unix:/tmp/x.sock"), timeout=1)
            assert sock is a and proven is False
        a.sendall(b"first")
        assert b.recv(10) == b"first"  # not a byte was sent or read


# ---- the HMAC handshake in front of a Channel


@pytest.mark.timeout(30)
@pytest.mark.parametrize("scheme", ["tcp", "unix", "unix+seqpacket"])
def test_authfile_authenticates_both_ends_and_pickle_works(
    scheme: str, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    keyfile = write_key(tmp_path / "key", KEY)
    where = "tcp://127.0.0.1:0" if scheme == "tcp" else f"{scheme}:{tmp_path}/s.sock"
    server = serve(f"{where}?authfile={keyfile}", echo_once, codec="pickle")
    url = with_options(server.address, authfile=keyfile)
    with Channel.connect(url, codec="pickle", timeout=5) as channel:
        assert channel.authenticated
        channel.send({"when": (2024, 1), "who": {"a", "b"}})
        assert channel.recv(timeout=5) == {"when": (2024, 1), "who": {"a", "b"}}
    server.close()
    assert server.error is None
    assert server.authenticated is True


@pytest.mark.timeout(30)
def test_tls_and_authfile_together(
    certs: Certs, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    keyfile = write_key(tmp_path / "key", KEY)
    server = serve(f"tls+tcp://127.0.0.1:0?{server_query(certs, authfile=keyfile)}", echo_once)
    url = f"{server.address}?{client_query(certs, authfile=keyfile)}"
    with trace.recording() as events, Channel.connect(url, timeout=5) as channel:
        channel.send(b"both")
        assert channel.recv(timeout=5) == b"both"
    server.close()
    assert server.error is None and server.authenticated is True
    steps = [e.call for e in events if e.call in ("tls", "auth")]
    assert steps[0] == "tls" and "auth" in steps  # TLS first, the HMAC inside it


@pytest.mark.timeout(30)
def test_a_wrong_key_is_refused_and_the_server_log_says_so_without_secrets(
    tmp_path: Path, serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    server_key = write_key(tmp_path / "server.key", KEY)
    client_key = write_key(tmp_path / "client.key", WRONG)
    server = serve(f"tcp://127.0.0.1:0?authfile={server_key}", echo_once)
    with pytest.raises(PermissionDenied, match="key files differ") as info:
        Channel.connect(with_options(server.address, authfile=client_key), timeout=5)
    server.close()
    assert isinstance(server.error, ConnectionLost)  # the client hung up without a proof
    for text in (str(info.value), str(server.error), caplog.text):
        assert KEY.decode() not in text and WRONG.decode() not in text


@pytest.mark.timeout(30)
def test_a_forged_proof_is_logged_as_refused(
    tmp_path: Path, serve: Callable[..., Server], caplog: pytest.LogCaptureFixture
) -> None:
    keyfile = write_key(tmp_path / "key", KEY)
    server = serve(f"tcp://127.0.0.1:0?authfile={keyfile}", echo_once)
    caplog.set_level(logging.WARNING, logger="sockwire")
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as forger:
        assert server.address.host is not None and server.address.port is not None
        forger.connect((server.address.host, server.address.port))
        forger.sendall(b"SWAH\x01" + bytes(32))
        assert len(forger.recv(69, socket.MSG_WAITALL)) == 69
        forger.sendall(bytes(32))
        assert forger.recv(1) == b"\x01"
        server.close()
    assert isinstance(server.error, PermissionDenied)
    assert "refused 127.0.0.1:" in caplog.text and "failed the auth handshake" in caplog.text
    assert KEY.decode() not in caplog.text


def test_key_file_problems_surface_before_connecting(tmp_path: Path) -> None:
    # port 1: nobody listens; these fail first, so no ConnectionRefused
    with pytest.raises(NotFound, match="no such key file"):
        Channel.connect(f"tcp://127.0.0.1:1?authfile={tmp_path}/missing")
    loose = write_key(tmp_path / "loose", KEY, 0o644)
    with pytest.raises(PermissionDenied, match=f"chmod 600 {loose}"):
        Channel.connect(f"tcp://127.0.0.1:1?authfile={loose}")


def test_check_server_catches_configuration_errors_at_startup(
    certs: Certs, tmp_path: Path
) -> None:
    secure.check_server(parse(f"tls+tcp://127.0.0.1:0?{server_query(certs)}"))
    with pytest.raises(NotFound, match="certfile="):
        secure.check_server(parse(f"tls+tcp://127.0.0.1:0?certfile={tmp_path}/none.pem"))
    with pytest.raises(NotFound, match="authfile"):
        secure.check_server(parse(f"unix:{tmp_path}/s.sock?authfile={tmp_path}/none"))


@pytest.mark.timeout(10)
def test_the_timeout_bounds_all_the_steps_and_the_socket_is_closed(tmp_path: Path) -> None:
    keyfile = write_key(tmp_path / "key", KEY)
    a, silent = socketpair()
    with silent:
        with pytest.raises(TimeoutError):
            secure.secure_client(a, parse(f"unix:/x.sock?authfile={keyfile}"), timeout=0.2)
        assert a.closed  # consumed: the caller has nothing to clean up
        assert silent.recv(100) != b""  # the hello went out; then the end
        assert silent.recv(100) == b""


def test_the_endpoint_string_names_the_file_never_the_key(tmp_path: Path) -> None:
    keyfile = write_key(tmp_path / "key", KEY)
    ep = parse(f"tcp://127.0.0.1:7000?authfile={keyfile}")
    assert str(ep) == f"tcp://127.0.0.1:7000?authfile={keyfile}"
    assert KEY.decode() not in str(ep) + repr(ep) + ep.display()


# ---- UNIX: peer credentials are authentication too


def test_allowed_uids_authenticates_the_peer_on_both_sides() -> None:
    me = os.geteuid()
    a, b = socketpair()
    sock, proven = secure.secure_server(a, parse(f"unix:@sw-test?allowed_uids={me}"))
    assert proven is True and sock is a
    sock, proven = secure.secure_client(b, parse(f"unix:@sw-test?allowed_gids={os.getegid()}"))
    assert proven is True and sock is b
    a.close()
    b.close()


def test_a_peer_outside_allowed_uids_is_refused_and_closed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = 65534 if os.geteuid() != 65534 else 65533
    a, b = socketpair()
    with b:
        with pytest.raises(PermissionDenied, match=f"uid {os.geteuid()}.*allowed_uids={other}"):
            secure.secure_server(a, parse(f"unix:@sw-test?allowed_uids={other}"))
        assert a.closed
        assert b.recv(10) == b""  # closed unread
    assert "refused" in caplog.text
    c, d = socketpair()
    with d, pytest.raises(PermissionDenied, match="the server of unix:@sw-test"):
        secure.secure_client(c, parse(f"unix:@sw-test?allowed_uids={other}"))


@pytest.mark.timeout(30)
def test_pickle_over_a_unix_channel_checked_by_uid(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    me = os.geteuid()
    server = serve(f"unix:{tmp_path}/s.sock?allowed_uids={me}", echo_once, codec="pickle")
    url = f"unix:{tmp_path}/s.sock?allowed_uids={me}"  # the client checks the server too
    with Channel.connect(url, codec="pickle", timeout=5) as channel:
        assert channel.authenticated
        channel.send([1, (2, 3)])
        assert channel.recv(timeout=5) == [1, (2, 3)]
    server.close()
    assert server.error is None and server.authenticated is True


# ---- pickle never runs on a default server


class _Exploit:
    """Unpickling this creates the file at ``path``: code chosen by the sender."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (self.path, "w"))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("codec", ["bytes", "json", "pickle"])
def test_pickle_bytes_sent_to_a_default_server_never_execute(
    codec: str, tmp_path: Path, serve: Callable[..., Server]
) -> None:
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(str(sentinel)))

    def receive(channel: Channel) -> Any:
        return channel.recv(timeout=10)

    server = serve("tcp://127.0.0.1:0", receive, codec=codec)
    with Channel.connect(server.address, timeout=5) as channel:
        assert not channel.authenticated
        channel.send(payload)
        channel.flush()
        server.close()
    assert not sentinel.exists()
    assert server.authenticated is False
    if codec == "bytes":
        assert server.result == payload  # delivered as bytes, never unpickled
    elif codec == "json":
        assert isinstance(server.error, ProtocolError)
    else:  # an unauthenticated pickle Channel cannot even be made
        assert isinstance(server.error, PermissionDenied)
        assert "unpickling runs code chosen by the sender" in str(server.error)


@pytest.mark.timeout(30)
def test_the_same_bytes_do_run_on_an_authenticated_pickle_channel(
    tmp_path: Path, serve: Callable[..., Server]
) -> None:
    # The control for the test above: the sentinel works, so its absence there means something.
    keyfile = write_key(tmp_path / "key", KEY)
    sentinel = tmp_path / "ran"

    def receive(channel: Channel) -> Any:
        handle = channel.recv(timeout=10)
        handle.close()
        return True

    server = serve(f"tcp://127.0.0.1:0?authfile={keyfile}", receive, codec="pickle")
    url = with_options(server.address, authfile=keyfile)
    with Channel.connect(url, timeout=5) as channel:  # a bytes channel sends raw bytes
        channel.send(pickle.dumps(_Exploit(str(sentinel))))
        channel.flush()
        server.close()
    assert server.error is None
    assert sentinel.exists()


def test_a_pickle_channel_refuses_an_unauthenticated_connect() -> None:
    with pytest.raises(PermissionDenied, match="unpickling"):
        Channel.connect("tcp://127.0.0.1:1", codec="pickle")


@pytest.mark.timeout(20)
def test_handshakes_over_tcp_run_with_nodelay(tmp_path: Path) -> None:
    # Nagle would hold a second small write until a delayed ACK: 40 ms per connect
    keyfile = write_key(tmp_path / "key", KEY)
    with dial.listen("tcp://127.0.0.1:0") as listener:
        ep = parse(f"tcp://127.0.0.1:{listener.getsockname()[1]}?authfile={keyfile}")
        client = dial.connect(ep)
        conn, _ = listener.accept()
    done: list[tuple[Socket, bool]] = []
    thread = threading.Thread(target=lambda: done.append(secure.secure_server(conn, ep)))
    thread.start()
    sock, proven = secure.secure_client(client, ep)
    thread.join()
    with sock, done[0][0] as server_sock:
        assert proven and done[0][1]
        for s in (sock, server_sock):
            assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


# ---- serve() and the patterns agree with secure on what can authenticate


@pytest.mark.timeout(30)
def test_serve_with_pickle_over_unix_checked_by_uid(tmp_path: Path) -> None:
    import sockwire

    me = os.geteuid()

    def echo(channel: Channel, peer: object) -> None:
        for message in channel:
            channel.send(message)

    url = f"unix:{tmp_path}/s.sock?allowed_uids={me}"
    with (
        sockwire.serve(url, echo, codec="pickle").start(),
        sockwire.connect(url, codec="pickle", timeout=5) as channel,
    ):
        assert channel.authenticated
        channel.send({"a": {1}})
        assert channel.recv(timeout=5) == {"a": {1}}


def test_pickle_is_refused_up_front_where_no_peer_can_be_proven(
    certs: Certs, tmp_path: Path
) -> None:
    import sockwire
    from sockwire.patterns import Rep, Req

    # TLS without cafile= proves no client: every connection would be refused later
    tls_no_ca = f"tls+tcp://127.0.0.1:0?certfile={certs.server_cert}&keyfile={certs.server_key}"
    with pytest.raises(PermissionDenied, match=r"cafile="):
        sockwire.serve(tls_no_ca, lambda channel, peer: None, codec="pickle")
    with pytest.raises(PermissionDenied, match=r"allowed_uids"):
        Rep(f"unix:{tmp_path}/r.sock", lambda body: body, codec="pickle")
    with pytest.raises(PermissionDenied, match=r"cafile="):
        Req("tls+tcp://127.0.0.1:1", codec="pickle")  # the system store proves no one


def test_connect_checks_configuration_once_and_never_retries_it(tmp_path: Path) -> None:
    import sockwire

    attempts: list[int] = []

    def count(attempt: int, error: object, pause: float) -> None:
        attempts.append(attempt)

    # a missing key file is NotFound, like a socket file that is not there yet:
    # it must not be mistaken for one and retried (the listener is there)
    with dial.listen(f"unix:{tmp_path}/s.sock"):
        url = f"unix:{tmp_path}/s.sock?authfile={tmp_path}/missing"
        with pytest.raises(NotFound, match="no such key file"):
            sockwire.connect(url, retries=3, on_retry=count)
        with pytest.raises(PermissionDenied, match="pickle"):
            sockwire.connect(f"unix:{tmp_path}/s.sock", codec="pickle", retries=3, on_retry=count)
    assert attempts == []


def test_serve_checks_certificates_and_key_files_at_startup(tmp_path: Path) -> None:
    import sockwire
    from sockwire.patterns import Rep

    with pytest.raises(NotFound, match=f"certfile={tmp_path}/none.pem"):
        sockwire.serve(f"tls+tcp://127.0.0.1:0?certfile={tmp_path}/none.pem", echo_once)
    loose = write_key(tmp_path / "loose", KEY, 0o640)
    with pytest.raises(PermissionDenied, match="chmod 600"):
        Rep(f"tcp://127.0.0.1:0?authfile={loose}", lambda body: body)
