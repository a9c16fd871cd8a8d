"""R2 of the reliability battery: coverage-guided fuzzing of sockwire's parsers with atheris.

    .venv/bin/python tools/fuzz.py list                 the targets
    .venv/bin/python tools/fuzz.py seed                 (re)write the seed corpus from real data
    .venv/bin/python tools/fuzz.py run TARGET [RUNS]    fuzz one target (default 1,000,000 runs)

``make fuzz`` runs every target. The committed corpus
(``tests/reliability/fuzz/corpus/TARGET/``) is read, never written: new
inputs go to a scratch directory (``.fuzz/TARGET/``), so a run leaves the
checkout as it was; copy a finding into the corpus by hand once it is fixed,
and ``make test`` replays it from then on. Only the errors a parser
documents may escape a target (tests/reliability/fuzz/targets.py).
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "tests" / "reliability" / "fuzz" / "corpus"
SCRATCH = ROOT / ".fuzz"


def _seeds() -> dict[str, list[bytes]]:
    """Real, valid inputs for every target: where the fuzzer starts from."""
    from tests.reliability.fuzz.targets import KEY

    from sockwire import auth, netlink, sock_diag
    from sockwire.errors import SockwireError
    from sockwire.framing import MODES, make_codec
    from sockwire.packet import DatagramCodec, SeqpacketCodec
    from sockwire.patterns import wire

    seeds: dict[str, list[bytes]] = {name: [] for name in _targets()}
    for i, mode in enumerate(MODES):
        enc = make_codec(mode).encoder
        parts = []
        for msg in (b"hello", b"", b"x" * 300):
            try:
                out = enc.encode(msg)
            except SockwireError:  # a mode that cannot carry it: a seed less
                continue
            parts.append(out if isinstance(out, bytes) else b"".join(bytes(p) for p in out))
        seeds["framing"].append(bytes([i, 7]) + b"".join(parts))
    for kind, codec in enumerate(
        (
            SeqpacketCodec("none"),
            SeqpacketCodec("sockwire", packet_limit=40),
            DatagramCodec("sockwire"),
        )
    ):
        data = bytearray([kind])
        for msg in (b"one", b"", b"y" * 100):
            for write in codec.encode(msg):
                pkt = b"".join(bytes(p) for p in write)
                data += bytes([len(pkt)]) + pkt
        seeds["packet"].append(bytes(data))
    seeds["endpoint"] = [
        text.encode()
        for text in (
            "unix:/run/app.sock?mode=0660&group=0&backlog=16",
            "unix+seqpacket:@name?allowed_uids=0,1000",
            "unix+dgram:/tmp/log.sock?framing=sockwire",
            "tcp://[::1]:7000?nodelay=1",
            "udp://127.0.0.1:7001?framing=sockwire",
            "tls+tcp://localhost:443?cafile=/etc/ca.pem&servername=x",
            "fd:3?type=dgram",
            "systemd:web",
            "netlink:route",
        )
    ]
    client_challenge = b"C" * 32
    hello = auth.MAGIC + bytes([auth.VERSION]) + client_challenge
    client_proof = auth.proof(KEY, auth.CLIENT_LABEL, client_challenge, b"c" * 32)
    server_proof = auth.proof(KEY, auth.SERVER_LABEL, b"c" * 32, b"S" * 32)
    challenge = auth.MAGIC + bytes([auth.VERSION]) + b"S" * 32 + server_proof
    seeds["handshake"] = [
        b"\x01" + hello + client_proof,  # the server side, streams
        b"\x03" + hello + client_proof,  # the server side, packets
        b"\x00" + challenge + auth.ACCEPTED,  # the client side
        b"\x02" + challenge + auth.REFUSED,
    ]
    for name in ("unix", "tcp", "tcp6", "udp", "netlink"):
        path = Path("/proc/net") / name
        if path.exists():
            seeds["procfs"].append(path.read_bytes()[:4000])
    seeds["netlink"] = _dumps(
        lambda sock: [netlink.dump_request(kind, 1) for kind in ("links", "addresses", "routes")],
        socket.AF_NETLINK,
        netlink.NETLINK_ROUTE if hasattr(netlink, "NETLINK_ROUTE") else 0,
    )
    seeds["sock_diag"] = [
        m.payload
        for raw in _dumps(
            lambda sock: [sock_diag.unix_request(1), sock_diag.netlink_request(2)],
            socket.AF_NETLINK,
            4,  # NETLINK_SOCK_DIAG
        )
        for m in netlink.parse_messages(raw)
    ][:20]
    seeds["pattern_wire"] = [
        msg.encode()
        for msg in (
            wire.Hello(wire.Role.REQ, 1000),
            wire.Request(7, b"hi"),
            wire.Reply(7, b"HI"),
            wire.Subscribe(1, b"weather."),
            wire.Ready(1),
            wire.Credit(10),
        )
    ]
    from sockwire import zmtp

    ready = zmtp.encode_command(b"READY", zmtp.encode_metadata([("Socket-Type", b"PAIR")]))
    seeds["zmtp"] = [
        b"\x0a" + ready + b"\x01\x03abc\x00\x02hi\x04\x06\x04PING\x00\x0a",
        b"\x03" + ready + b"\x00\x05hello",
    ]
    seeds["json_codec"] = [
        b'{"a":[1,2.5,"\\u00e9",null,true]}',
        b'"\\ud83d\\ude00"',
        b'"\\ud800"',
        b"[" * 50 + b"]" * 50,
    ]
    return seeds


def _dumps(requests, family: int, proto: int) -> list[bytes]:  # type: ignore[no-untyped-def]
    """Raw replies of real netlink dumps on this machine (empty where not allowed)."""
    out: list[bytes] = []
    try:
        with socket.socket(family, socket.SOCK_RAW, proto) as sock:
            sock.settimeout(2)
            for request in requests(sock):
                sock.send(request)
                while True:
                    data = sock.recv(65536)
                    out.append(data)
                    if b"\x03\x00" in data[4:6] or len(out) > 40:  # NLMSG_DONE
                        break
    except OSError:
        pass
    return out


def _targets() -> dict[str, object]:
    from tests.reliability.fuzz.targets import TARGETS

    return dict(TARGETS)


def seed() -> None:
    """Write the seed corpus. Run it in a private network namespace (``make
    fuzz-seed`` does): the /proc/net and netlink dumps then show only the
    sockets opened here, nothing of the machine's."""
    listeners = [socket.socket(socket.AF_UNIX), socket.socket(socket.AF_INET)]
    listeners[0].bind(b"\0sockwire-fuzz-seed")
    listeners[1].bind(("127.0.0.1", 0))
    for sock in listeners:
        sock.listen()
    try:
        seeds = _seeds()
    finally:
        for sock in listeners:
            sock.close()
    for name, inputs in seeds.items():
        folder = CORPUS / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(inputs):
            (folder / f"seed-{i:03d}").write_bytes(data)
        print(f"{name}: {len(inputs)} seeds")


def run(name: str, runs: int) -> None:
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        sys.exit("tools/fuzz.py: atheris is not installed (pip install atheris; make fuzz does)")
    with atheris.instrument_imports():
        from tests.reliability.fuzz.targets import TARGETS

        import sockwire  # noqa: F401  # instrumented: coverage guides the fuzzer
    scratch = SCRATCH / name
    scratch.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.argv[0],
        str(scratch),  # new inputs go here; the committed corpus below is only read
        str(CORPUS / name),
        f"-runs={runs}",
        "-timeout=10",  # a hang is a finding
        "-rss_limit_mb=2048",  # so is memory beyond every stated bound
        "-max_len=1024",  # longer inputs only repeat what shorter ones reach, slower
        "-print_final_stats=1",
    ]
    atheris.Setup(argv, TARGETS[name])
    atheris.Fuzz()


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "list"
    if command == "list":
        print("\n".join(_targets()))
    elif command == "seed":
        seed()
    elif command == "run" and len(sys.argv) >= 3:
        run(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000)
    else:
        sys.exit(__doc__)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
