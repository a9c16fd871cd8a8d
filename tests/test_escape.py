"""escape: every name printed or logged is one inert line; JSON keeps it exact."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sockwire.escape import exact, one_line, printable


@given(st.binary(max_size=200))
def test_any_bytes_become_one_printable_line(name: bytes) -> None:
    shown = printable(name)
    assert shown.isprintable()  # no newline, ESC, C1, bidi override, separator
    assert one_line(shown) == shown  # the sinks' pass changes nothing: no double escaping


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_escaping_keeps_names_apart(a: bytes, b: bytes) -> None:
    if a != b:
        assert printable(a) != printable(b)


@given(st.binary(max_size=200))
def test_json_keeps_the_exact_name(name: bytes) -> None:
    text = json.dumps({"local": exact(name)})
    assert json.loads(text)["local"].encode("utf-8", "surrogateescape") == name


def test_the_escapes() -> None:
    assert printable("/run/app.sock") == "/run/app.sock"
    assert printable(b"a\nb\tc\x1b[2J\xff\\") == "a\\nb\\tc\\x1b[2J\\xff\\\\"
    assert printable("\u202e\u2028\x9b\xa0") == "\\u202e\\u2028\\u009b\\u00a0"
    assert printable(b"\xc2\x9b") != printable(b"\x9b")  # a C1 control is not a bad byte
    assert one_line("C:\\path\n") == "C:\\path\\n"
