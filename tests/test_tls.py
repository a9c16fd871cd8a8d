"""tls.py and the Channel's TLS seam: real handshakes on 127.0.0.0/8 with throwaway certificates.

Certificates come from the ``openssl`` command line (tests/tls_helpers.py says why).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sockwire import dial, tls, trace
from sockwire.address import parse
from sockwire.channel import Channel, TLSSocketIO
from sockwire.errors import (
    AddressError,
    ConnectionLost,
    NotFound,
    PermissionDenied,
    ProtocolError,
    TimeoutError,
)
from sockwire.secure import secure_server
from sockwire.sock import Socket
from tests.tls_helpers import Certs, client_query, make_certs, server_query


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _echo(channel: Channel) -> None:
    for message in channel:
        channel.send(message)


class Server:
    """A tls+tcp listener serving one connection in a thread with ``handler``."""

    def __init__(
        self,
        query: str,
        handler: Callable[[Channel], None] = _echo,
        *,
        host: str = "127.0.0.1",
        codec: str = "bytes",
    ) -> None:
        self.ep = parse(f"tls+tcp://{host}:0?{query}")
        self.listener = dial.listen(self.ep)
        self.listener.settimeout(10)  # a test that never connects must not hang the thread
        self.port = self.listener.getsockname()[1]
        self.handler = handler
        self.codec = codec
        self.error: BaseException | None = None
        self.authenticated: bool | None = None
        self.thread = threading.Thread(target=self._run)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.listener.accept()
            sock, self.authenticated = secure_server(conn, self.ep, timeout=5)
            with Channel.from_socket(
                sock, authenticated=self.authenticated, codec=self.codec
            ) as channel:
                self.handler(channel)
        except BaseException as exc:
            self.error = exc

    def url(self, query: str, host: str = "127.0.0.1") -> str:
        return f"tls+tcp://{host}:{self.port}?{query}"

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


# ---- round trips


@pytest.mark.timeout(30)
def test_messages_of_every_size_round_trip_over_tls(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs))
    sizes = [0, 1, 100, 16383, 16384, 70_000, 1 << 20]
    with Channel.connect(server.url(client_query(certs)), timeout=5) as channel:
        assert isinstance(channel._io, TLSSocketIO)
        assert channel.fileno() >= 0
        for size in sizes:
            payload = os.urandom(size)
            channel.send(payload)
            assert channel.recv(timeout=10) == payload
        many = [b"m%d" % i for i in range(2000)]
        channel.send_many(many)
        assert [channel.recv() for _ in many] == many
    server.close()
    assert server.error is None


@pytest.mark.timeout(30)
def test_json_over_tls_and_the_authenticated_flags(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs), codec="json")
    with Channel.connect(server.url(client_query(certs)), codec="json", timeout=5) as channel:
        channel.send({"n": 1, "s": "ü"})
        assert channel.recv(timeout=5) == {"n": 1, "s": "ü"}
        # the server's certificate was checked against the cafile we named
        assert channel.authenticated
    server.close()
    assert server.error is None
    assert server.authenticated is False  # no client certificate was asked for


@pytest.mark.timeout(30)
def test_mutual_tls_authenticates_both_ends_and_permits_pickle(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs, require_client=True), codec="pickle")
    url = server.url(client_query(certs, cert=True))
    with Channel.connect(url, codec="pickle", timeout=5) as channel:
        channel.send({"set": {1, 2}, "t": (1, "x")})
        assert channel.recv(timeout=5) == {"set": {1, 2}, "t": (1, "x")}
    server.close()
    assert server.error is None
    assert server.authenticated is True


@pytest.mark.timeout(30)
def test_full_duplex_from_two_threads(certs: Certs, serve: Callable[..., Server]) -> None:
    # one thread only sends, another only receives: both inside the same TLS
    # connection at once, which OpenSSL allows only one call at a time for
    server = serve(server_query(certs))
    count = 3000
    with Channel.connect(server.url(client_query(certs)), timeout=5) as channel:
        received: list[bytes] = []

        def reader() -> None:
            received.extend(channel.recv(timeout=20) for _ in range(count))

        thread = threading.Thread(target=reader)
        thread.start()
        for i in range(count):
            channel.send(b"%d" % i + b"." * (i % 300))
        channel.flush()
        thread.join()
    assert received == [b"%d" % i + b"." * (i % 300) for i in range(count)]
    server.close()
    assert server.error is None


@pytest.mark.timeout(30)
def test_a_clean_close_ends_iteration_and_a_cut_one_is_connection_lost(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    def say_and_close(channel: Channel) -> None:
        channel.send(b"one")
        channel.send(b"two")  # close() flushes, then sends close_notify

    server = serve(server_query(certs), say_and_close)
    with Channel.connect(server.url(client_query(certs)), timeout=5) as channel:
        assert list(channel) == [b"one", b"two"]
    server.close()

    cut = threading.Event()

    def cut_short(channel: Channel) -> None:
        raw = channel._io.raw  # type: ignore[attr-defined]
        raw.setblocking(True)
        raw.sendall(b"\0\0\0\x02hi")
        socket.socket.close(raw)  # the fd goes without a close_notify: a forged FIN looks so
        cut.set()

    server = serve(server_query(certs), cut_short)
    with Channel.connect(server.url(client_query(certs)), timeout=5) as channel:
        assert channel.recv(timeout=5) == b"hi"
        assert cut.wait(10)
        with pytest.raises(ConnectionLost, match="without close_notify"):
            channel.recv(timeout=5)
    server.close()


# ---- refusals, with clear one-line errors


@pytest.mark.timeout(30)
def test_a_server_signed_by_another_ca_is_refused(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs))
    url = server.url(f"cafile={certs.other_ca}")
    with pytest.raises(PermissionDenied) as info:
        Channel.connect(url, timeout=5)
    text = str(info.value)
    assert "certificate verify failed: unable to get local issuer certificate" in text
    assert "cafile=" in text and "\n" not in text
    server.close()
    assert isinstance(server.error, PermissionDenied)
    assert "refused our certificate" in str(server.error)


@pytest.mark.timeout(30)
def test_a_wrong_host_name_is_refused(certs: Certs, serve: Callable[..., Server]) -> None:
    server = serve(server_query(certs))
    with pytest.raises(PermissionDenied, match=r"Hostname mismatch.*'example\.org'"):
        Channel.connect(server.url(client_query(certs, servername="example.org")), timeout=5)
    server.close()


@pytest.mark.timeout(30)
def test_an_address_the_certificate_does_not_hold_is_refused(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs), host="127.0.0.2")
    with pytest.raises(PermissionDenied, match=r"IP address mismatch.*'127\.0\.0\.2'"):
        Channel.connect(server.url(client_query(certs), host="127.0.0.2"), timeout=5)
    server.close()


@pytest.mark.timeout(30)
def test_servername_lets_an_address_match_by_name(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs), host="127.0.0.2")
    url = server.url(client_query(certs, servername="localhost"), host="127.0.0.2")
    with Channel.connect(url, timeout=5) as channel:
        channel.send(b"ok")
        assert channel.recv(timeout=5) == b"ok"
    server.close()
    assert server.error is None


@pytest.mark.timeout(30)
def test_mutual_tls_without_a_client_certificate(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs, require_client=True))
    # TLS 1.3: the client's handshake ends before the server has judged its
    # (missing) certificate, so the client learns it at its first read
    with Channel.connect(server.url(client_query(certs)), timeout=5) as channel:
        with pytest.raises(PermissionDenied, match="requires a client certificate"):
            channel.recv(timeout=5)
        assert channel.state == "BROKEN"
    server.close()
    assert isinstance(server.error, PermissionDenied)
    assert "sent no certificate" in str(server.error)


@pytest.mark.timeout(30)
def test_mutual_tls_with_a_certificate_of_another_ca(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs, require_client=True))
    query = client_query(certs, certfile=certs.other_client_cert, keyfile=certs.other_client_key)
    with (
        Channel.connect(server.url(query), timeout=5) as channel,
        pytest.raises(PermissionDenied, match="refused our certificate"),
    ):
        channel.recv(timeout=5)
    server.close()
    assert isinstance(server.error, PermissionDenied)
    assert "certificate verify failed" in str(server.error)


def test_missing_and_bad_files_name_the_option(certs: Certs, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(NotFound, match=f"cafile={missing}"):
        Channel.connect(f"tls+tcp://127.0.0.1:1?cafile={missing}")  # before any connect
    with pytest.raises(NotFound, match=f"certfile={missing}"):
        tls.server_context(parse(f"tls+tcp://127.0.0.1:0?certfile={missing}"))
    with pytest.raises(NotFound, match=f"keyfile={missing}"):
        tls.server_context(
            parse(f"tls+tcp://127.0.0.1:0?certfile={certs.server_cert}&keyfile={missing}")
        )
    with pytest.raises(AddressError, match=r"needs a certificate.*certfile="):
        tls.server_context(parse("tls+tcp://127.0.0.1:0"))
    with pytest.raises(AddressError, match="keyfile= without certfile="):
        tls.client_context(parse(f"tls+tcp://127.0.0.1:1?keyfile={certs.client_key}"))
    with pytest.raises(AddressError, match=r"keyfile=.*is the key the one of certfile"):
        tls.server_context(
            parse(f"tls+tcp://127.0.0.1:0?certfile={certs.server_cert}&keyfile={certs.client_key}")
        )
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(AddressError, match="cannot load cafile="):
        tls.client_context(parse(f"tls+tcp://127.0.0.1:1?cafile={garbage}"))


@pytest.mark.timeout(30)
def test_a_plain_client_at_a_tls_server_is_a_protocol_error(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs))
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        plain.connect(("127.0.0.1", server.port))
        plain.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        server.thread.join(timeout=10)
    server.close()
    assert isinstance(server.error, ProtocolError)
    assert "does not speak TLS" in str(server.error)


@pytest.mark.timeout(30)
def test_a_tls_client_at_a_plain_server_is_a_protocol_error(certs: Certs) -> None:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer_plainly() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_plainly)
        thread.start()
        try:
            with pytest.raises(ProtocolError, match="does not speak TLS"):
                Channel.connect(f"tls+tcp://127.0.0.1:{port}?{client_query(certs)}", timeout=5)
        finally:
            thread.join()


@pytest.mark.timeout(10)
def test_a_server_that_never_answers_times_the_handshake_out(certs: Certs) -> None:
    with Socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel completes the connect; nobody accepts
        url = f"tls+tcp://127.0.0.1:{listener.getsockname()[1]}?{client_query(certs)}"
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"TLS handshake \(client\).*0\.3 s"):
            Channel.connect(url, timeout=0.3)
        assert time.monotonic() - started < 3


@pytest.mark.timeout(30)
def test_a_deadline_holds_when_the_peer_stalls_inside_a_tls_record(certs: Certs) -> None:
    # The server speaks TLS through memory BIOs, so it can send half a record.
    ep = parse(f"tls+tcp://127.0.0.1:0?{server_query(certs)}")
    release = threading.Event()
    errors: list[BaseException] = []
    with dial.listen(ep) as listener:
        port = listener.getsockname()[1]

        def half_a_record() -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                    obj = tls.server_context(ep).wrap_bio(incoming, outgoing, server_side=True)
                    while True:
                        try:
                            obj.do_handshake()
                            break
                        except ssl.SSLWantReadError:
                            if outgoing.pending:
                                conn.sendall(outgoing.read())
                            incoming.write(conn.recv(65536))
                    if outgoing.pending:
                        conn.sendall(outgoing.read())
                    obj.write(b"\0\0\0\x05hello")
                    record = outgoing.read()
                    conn.sendall(record[:10])
                    release.wait(10)
                    conn.sendall(record[10:])
                    conn.recv(1)  # until the client closes
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=half_a_record)
        thread.start()
        try:
            with Channel.connect(f"tls+tcp://127.0.0.1:{port}?{client_query(certs)}") as channel:
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    channel.recv(timeout=0.3)
                assert time.monotonic() - started < 3
                release.set()
                assert channel.recv(timeout=10) == b"hello"
        finally:
            release.set()
            thread.join()
    assert errors == []


# ---- contexts


def test_contexts_are_tls12_at_least_cached_and_reloaded_when_a_file_changes(
    certs: Certs,
) -> None:
    client_ep = parse(f"tls+tcp://127.0.0.1:1?{client_query(certs)}")
    server_ep = parse(f"tls+tcp://127.0.0.1:0?{server_query(certs)}")
    client_ctx = tls.client_context(client_ep)
    server_ctx = tls.server_context(server_ep)
    for ctx in (client_ctx, server_ctx):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_ctx.check_hostname and client_ctx.verify_mode == ssl.CERT_REQUIRED
    assert server_ctx.verify_mode == ssl.CERT_NONE  # no cafile: no client certificate asked
    assert server_ctx.num_tickets == 0
    assert tls.client_context(client_ep) is client_ctx
    info = os.stat(certs.ca)
    os.utime(certs.ca, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
    assert tls.client_context(client_ep) is not client_ctx


@pytest.mark.timeout(30)
def test_the_handshake_shows_in_a_trace_without_secrets(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs))
    with trace.recording() as events, Channel.connect(server.url(client_query(certs))) as ch:
        ch.send(b"x")
        assert ch.recv(timeout=5) == b"x"
    server.close()
    notes = [e for e in events if e.call == "tls"]
    assert notes
    assert "TLSv1.3" in notes[-1].result
    with open(certs.client_key) as handle:
        key_text = handle.read().split("\n")[1]
    assert key_text not in " ".join(repr(e) for e in events)


@pytest.mark.timeout(30)
def test_close_from_another_thread_wakes_a_blocked_recv(
    certs: Certs, serve: Callable[..., Server]
) -> None:
    server = serve(server_query(certs))
    channel = Channel.connect(server.url(client_query(certs)), timeout=5)
    outcome: list[BaseException] = []
    started = threading.Event()

    def blocked() -> None:
        started.set()
        try:
            channel.recv()
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert started.wait(5)
    while not channel._recv_lock.locked() and thread.is_alive():
        thread.join(0.001)  # bounded: the reader takes the lock right away (as test_channel)
    channel.close()
    thread.join(10)
    server.close()
    assert [type(e).__name__ for e in outcome] == ["ClosedError"]


@pytest.mark.timeout(30)
def test_serve_and_connect_over_mutual_tls_with_pickle_and_an_idle_timeout(
    certs: Certs,
) -> None:
    import sockwire

    def echo(channel: Channel, peer: object) -> None:
        for message in channel:
            channel.send(message)

    url = f"tls+tcp://127.0.0.1:0?{server_query(certs, require_client=True)}"
    with sockwire.serve(url, echo, codec="pickle", idle_timeout=0.5).start() as server:
        port = parse(server.endpoint).port
        client_url = f"tls+tcp://127.0.0.1:{port}?{client_query(certs, cert=True)}"
        with sockwire.connect(client_url, codec="pickle", timeout=5) as channel:
            assert channel.authenticated
            channel.send({"x": (1, 2)})
            assert channel.recv(timeout=5) == {"x": (1, 2)}
            # the server's read limits work through the TLS seam: after 0.5 s of
            # silence it ends the connection, with close_notify: a clean end here
            started = time.monotonic()
            assert list(channel) == []
            assert time.monotonic() - started < 3
    assert server.stats.handshake_failed == 0
