"""Endpoint mistakes on the command line: one line, `sockwire: ...`, exit 2; and -4/-6.

Each case is a regression test for an issue item: "did you mean" for a
missing scheme, ports as numbers, ids and modes refused at parse time (an
OverflowError traceback before), port 0 and listener options on a client,
socket options and source binding through the real commands.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sockwire import dial
from tests.cli_helpers import sockwire


def _one_line_error(proc: object, code: int) -> str:
    import subprocess

    assert isinstance(proc, subprocess.CompletedProcess)
    err = proc.stderr.decode()
    assert proc.returncode == code, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("sockwire: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["connect", "/tmp/x.sock"], ["unknown scheme", "did you mean unix:/tmp/x.sock?"]),
        (["send", "127.0.0.1:80", "hi"], ["did you mean tcp://127.0.0.1:80?"]),
        (["connect", "tcp://127.0.0.1:http"], ["ports are numbers"]),
        (["send", "udp://127.0.0.1:0", "hi"], ["port 0", "only makes sense to bind"]),
        (["connect", "unix:/tmp/x.sock?mode=0600"], ["'mode' is not for connecting"]),
        (["listen", "tcp://127.0.0.1:0?sourceport=4000"], ["'sourceport' is not for listening"]),
        (["connect", "-4", "unix:/tmp/x.sock"], ["-4 on unix:/tmp/x.sock", "tcp://"]),
        (["relay", "unix:@sw-never", "unix:/tmp/x.sock", "-6"], ["-6 on unix:/tmp/x.sock"]),
    ],
)
@pytest.mark.timeout(30)
def test_endpoint_mistakes_are_one_line_exit_2(argv: list[str], words: list[str]) -> None:
    line = _one_line_error(sockwire(*argv), 2)
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("option", ["owner", "group"])
@pytest.mark.timeout(30)
def test_out_of_range_owner_or_group_is_exit_2_not_a_traceback(
    tmp_path: Path, option: str
) -> None:
    path = tmp_path / "x.sock"
    proc = sockwire("listen", f"unix:{path}?{option}=99999999999999999999")
    line = _one_line_error(proc, 2)
    assert f"option '{option}'" in line and "4294967294" in line
    assert not path.exists()


@pytest.mark.timeout(30)
def test_mode_with_special_bits_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "x.sock"
    line = _one_line_error(sockwire("listen", f"unix:{path}?mode=07777"), 2)
    assert "0 to 0777" in line
    assert not path.exists()


@pytest.mark.timeout(30)
def test_a_refused_socket_option_is_named(tmp_path: Path) -> None:
    line = _one_line_error(sockwire("send", "udp://127.0.0.1:9?bindtodevice=nosuch0", "x"), 2)
    assert "?bindtodevice=nosuch0 on udp://127.0.0.1:9 (ENODEV)" in line


@pytest.mark.timeout(30)
def test_send_from_a_source_port_and_over_ipv4_only() -> None:
    with dial.bind("udp://127.0.0.1:0") as receiver:
        port = receiver.getsockname()[1]  # type: ignore[index]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            source = probe.getsockname()[1]
        proc = sockwire("send", "-4", f"udp://localhost:{port}?sourceport={source}", "hi")
        assert proc.returncode == 0, proc.stderr
        receiver.settimeout(10)
        data, sender = receiver.recvfrom(100)
        assert data == b"hi"
        assert sender == ("127.0.0.1", source)


@pytest.mark.timeout(30)
def test_dash_6_never_falls_back_to_ipv4() -> None:
    with dial.bind("udp://[::1]:0") as v6, dial.bind("udp://127.0.0.1:0") as v4:
        port = v4.getsockname()[1]  # type: ignore[index]
        names = {info[4][0] for info in socket.getaddrinfo("localhost", port)}
        if "::1" not in names:
            # this /etc/hosts gives localhost no IPv6 address: -6 finds nothing (exit 3)
            line = _one_line_error(sockwire("send", "-6", f"udp://localhost:{port}", "hi"), 3)
            assert "localhost" in line
            return
        port6 = v6.getsockname()[1]  # type: ignore[index]
        proc = sockwire("send", "-6", f"udp://localhost:{port6}", "hi")
        assert proc.returncode == 0, proc.stderr
        v6.settimeout(10)
        assert v6.recv(10) == b"hi"


@pytest.mark.timeout(30)
def test_help_shows_the_family_flags() -> None:
    for command in ("connect", "send", "relay"):
        out = sockwire(command, "--help").stdout.decode()
        assert "-4" in out and "-6" in out and "?family=" in out, command
