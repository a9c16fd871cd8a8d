"""Names from other people, made safe to print: one escaping function for every output.

A socket name is chosen by whoever bound it: any local user can bind an
abstract name (or a path in a directory they own) holding a newline, a
terminal escape sequence or a right-to-left override. Printed raw, such a
name forges lines in a listing, a trace or a log ("refused peer ...") and
drives the reader's terminal. So every name, path or payload that is
printed or logged goes through :func:`printable` first; JSON output keeps
the exact value instead (:func:`exact`), since JSON escaping is already
unambiguous.

The escapes are Python's: ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` (ASCII control
characters, and the bytes of invalid UTF-8), ``\\uNNNN`` / ``\\UNNNNNNNN``
(every other character :meth:`str.isprintable` rejects: C1 controls,
bidirectional overrides, line and paragraph separators, non-ASCII spaces;
so the character U+009B and the invalid byte 0x9B read differently).
A backslash is doubled, so an escaped text reads back to one name only.

:func:`one_line` is the last line of defence at the CLI's output sinks: it
neutralises what could break a line or reach the terminal, but leaves
backslashes alone, so text already passed through :func:`printable` is
unchanged by it (no double escaping).

Imports nothing from sockwire: every layer may use it.
"""

from __future__ import annotations

__all__ = ["exact", "one_line", "printable"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(value: str | bytes) -> str:
    """``value`` with every unprintable character (and backslash) escaped; one line, inert.

    Bytes are read as UTF-8; a byte that is not valid UTF-8 becomes ``\\xNN``.
    """
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    if text.isprintable() and "\\" not in text:
        return text  # the common case, in C
    return _escape(text, backslash=True)


def one_line(text: str) -> str:
    """``text`` without anything that breaks a line or talks to a terminal (backslash kept)."""
    if text.isprintable():
        return text
    return _escape(text, backslash=False)


def exact(value: str | bytes) -> str:
    """The name as a ``str`` for JSON: exact, with invalid UTF-8 as lone surrogates.

    ``json.dumps`` writes those as ``\\udcNN``; ``json.loads(...).encode("utf-8",
    "surrogateescape")`` gives the original bytes back.
    """
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _escape(text: str, *, backslash: bool) -> str:
    out: list[str] = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\" if backslash else ch)
        elif ch.isprintable():
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        else:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # a byte of invalid UTF-8 (surrogateescape)
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x80:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)
