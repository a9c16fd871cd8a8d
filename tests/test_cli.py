"""The command line: version, help, exit codes, one-line errors, fast start."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

import sockwire
from sockwire.cli.exitcodes import Exit, for_error
from sockwire.cli.main import COMMANDS, main
from tests.helpers import need_root


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sockwire", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"sockwire {sockwire.__version__}"


def test_help_lists_commands_and_exit_codes() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    for word in ("tour", "families", "exit codes", "130"):
        assert word in proc.stdout


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys; from sockwire.cli.main import build_parser; build_parser(); "
        "print(sorted(m for m in sys.modules if m.startswith('sockwire.')))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    loaded = proc.stdout
    assert "tour" not in loaded and "families_cmd" not in loaded


def test_help_starts_fast() -> None:
    started = time.monotonic()
    proc = _run("--help")
    assert proc.returncode == 0
    assert time.monotonic() - started < 3 * 1.0  # a deadline with 3x slack, not a benchmark


def test_no_command_is_a_usage_error() -> None:
    assert _run().returncode == Exit.USAGE


def test_unknown_command_is_a_one_line_usage_error() -> None:
    proc = _run("frobnicate")
    assert proc.returncode == Exit.USAGE
    assert proc.stderr.strip().splitlines()[-1].startswith("sockwire: ")
    assert "Traceback" not in proc.stderr


def test_families_text_and_json() -> None:
    proc = _run("families")
    assert proc.returncode == 0 and "AF_UNIX" in proc.stdout
    doc = json.loads(_run("families", "--json").stdout)
    names = {f["name"] for f in doc["families"]}
    assert {"AF_UNIX", "AF_INET", "AF_NETLINK"} <= names
    by_name = {f["name"]: f["types"] for f in doc["families"]}
    # the kernel makes AF_UNIX SOCK_RAW a datagram socket: not listed as RAW
    assert by_name["AF_UNIX"]["SOCK_RAW"] == "is SOCK_DGRAM"
    assert "RAW" not in next(line for line in proc.stdout.splitlines() if "AF_UNIX" in line)


def test_families_lists_raw_inet_for_root() -> None:
    """Probed with ICMP: with protocol 0 every raw INET probe failed, even as root."""
    need_root()
    doc = json.loads(_run("families", "--json").stdout)
    by_name = {f["name"]: f["types"] for f in doc["families"]}
    assert by_name["AF_INET"]["SOCK_RAW"] == "ok"
    assert by_name["AF_INET6"]["SOCK_RAW"] == "ok"


def test_tour_unknown_stop_is_usage_error() -> None:
    proc = _run("tour", "--only", "no-such-stop")
    assert proc.returncode == Exit.USAGE
    assert "valid:" in proc.stderr


def test_tour_list() -> None:
    proc = _run("tour", "--list")
    assert proc.returncode == 0
    assert "stream" in proc.stdout


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (sockwire.AddressError("x"), Exit.USAGE),
        (sockwire.ConnectionRefused("x"), Exit.REFUSED),
        (sockwire.NotFound("x"), Exit.REFUSED),
        (sockwire.TimeoutError("x"), Exit.TIMEOUT),
        (sockwire.PermissionDenied("x"), Exit.PERMISSION),
        (sockwire.ConnectionLost("x"), Exit.IO),
    ],
)
def test_exit_code_per_error(error: sockwire.SockwireError, code: Exit) -> None:
    assert for_error(error) == code


def test_main_turns_errors_into_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tour", "--only", "nope"]) == Exit.USAGE
    err = capsys.readouterr().err
    assert err.startswith("sockwire: unknown tour stop")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_help_documents_exit_codes(command: str) -> None:
    proc = _run(command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "exit codes:" in proc.stdout
    assert "  0 " in proc.stdout and "  2 " in proc.stdout


def test_families_help_documents_its_json() -> None:
    proc = _run("families", "--help")
    assert '{"families": [{"number", "name", "supported", "needs_capability"' in proc.stdout
    doc = json.loads(_run("families", "--json").stdout)
    first = doc["families"][0]
    assert set(first) == {"number", "name", "supported", "needs_capability", "types"}


def test_tour_header_counts_one_stop_in_the_singular() -> None:
    proc = _run("tour", "--only", "families", "--brief")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("sockwire tour: 1 stop, between real processes ")


def test_send_takes_messages_after_options_too() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(15)
        port = receiver.getsockname()[1]
        proc = _run("send", f"udp://127.0.0.1:{port}", "first", "--trace", "second")
        assert proc.returncode == 0, proc.stderr
        assert [receiver.recv(10), receiver.recv(10)] == [b"first", b"second"]
    bad = _run("send", f"udp://127.0.0.1:{port}", "x", "--bogus")
    assert bad.returncode == Exit.USAGE and "unrecognized arguments: --bogus" in bad.stderr
