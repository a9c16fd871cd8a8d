"""Endpoint grammar: canonical round trips (hypothesis) and one clear error per mistake."""

from __future__ import annotations

import socket
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sockwire
from sockwire.address import OPTIONS, UNIX_PATH_MAX, Endpoint, merge_options, parse

# ---- strategies for valid endpoints ---------------------------------------------

_path_chars = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\0", min_codepoint=1
)


def _fits(path: str) -> bool:
    body = path[1:] if path.startswith("@") else path
    return 0 < len(body.encode("utf-8", "surrogateescape")) <= UNIX_PATH_MAX


unix_paths = st.one_of(
    st.text(_path_chars, min_size=1, max_size=60).filter(lambda p: not p.startswith("@")),
    st.text(_path_chars, min_size=1, max_size=60).map(lambda p: "@" + p),
    st.text(string.ascii_letters + "/._-?&% #=", min_size=1, max_size=40).map(lambda p: "/" + p),
).filter(_fits)

hostnames = st.from_regex(r"\A[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,8}){0,3}\Z")
hosts = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    hostnames,
    st.just("localhost"),
)

OPTION_VALUES = {
    "backlog": st.integers(0, 65535).map(str),
    "mode": st.integers(0, 0o7777).map(lambda m: f"{m:o}"),
    "owner": st.sampled_from(["root", "0", "nobody", "1000"]),
    "group": st.sampled_from(["root", "0", "nogroup"]),
    "reuseaddr": st.sampled_from(["1", "0", "true", "no"]),
    "reuseport": st.sampled_from(["1", "0", "on", "off"]),
    "rcvbuf": st.integers(1, 2**31 - 1).map(str),
    "sndbuf": st.integers(1, 2**31 - 1).map(str),
    "timeout": st.sampled_from(["1", "0.5", "2.25", "30", "1e2"]),
    "framing": st.sampled_from(["len16", "len32", "LEN64", "netstring", "line", "nul"]),
    "proto": st.sampled_from(["icmp", "ICMP", "udp", "1", "17", "250"]),
    "type": st.sampled_from(["stream", "dgram", "seqpacket"]),
    "groups": st.integers(0, 2**32 - 1).map(str),
    "certfile": st.text(_path_chars, min_size=1, max_size=30),
    "keyfile": st.text(_path_chars, min_size=1, max_size=30),
    "cafile": st.text(string.ascii_letters + "/&?% =", min_size=1, max_size=30),
    "authfile": st.text(_path_chars, min_size=1, max_size=30),
    "servername": hostnames,
    "unsafe_dir": st.sampled_from(["1", "0", "yes", "off"]),
    "allowed_uids": st.lists(
        st.one_of(st.integers(0, 2**32 - 2).map(str), st.sampled_from(["root", "nobody"])),
        min_size=1,
        max_size=5,
    ).map(",".join),
    "allowed_gids": st.sampled_from(["0", "100,0", "nogroup", "0,0"]),
}


def _quote(value: str) -> str:
    # per character: joining the UTF-8 bytes as chr(b) turned U+0080 into
    # "\xc2\x80" (two characters, four bytes), so a path that fits drew a
    # string whose path did not (a flaky failure)
    return "".join(f"%{ord(c):02X}" if c in "%?&#= " else c for c in value)


@st.composite
def endpoint_strings(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(list(sockwire.address.SCHEMES)))
    if scheme.startswith("unix"):
        path = draw(unix_paths)
        body = f"{scheme}:{'//' if path.startswith('//') else ''}{_quote(path)}"
    elif scheme in ("tcp", "udp", "tls+tcp"):
        host = draw(hosts)
        shown = f"[{host}]" if ":" in host else host
        body = f"{scheme}://{shown}:{draw(st.integers(0, 65535))}"
    elif scheme == "raw":
        host = draw(st.one_of(st.ip_addresses(v=4).map(str), st.just("localhost")))
        body = f"raw://{host}"
    elif scheme == "netlink":
        body = "netlink:" + draw(st.sampled_from(["route", "sock_diag", "generic"]))
    elif scheme == "fd":
        body = f"fd:{draw(st.integers(0, 2**31 - 1))}"
    else:
        body = "systemd:" + draw(st.sampled_from(["", "web", "api.sock", "a-b_c"]))
    is_abstract = scheme.startswith("unix") and body.split(":", 1)[1].startswith("@")
    names = sorted(
        name
        for name, spec in OPTIONS.items()
        if scheme in spec.schemes and not (spec.path_only and is_abstract)
    )
    chosen = draw(st.lists(st.sampled_from(names), unique=True, max_size=4)) if names else []
    packet = scheme in ("unix+seqpacket", "unix+dgram", "udp")
    values = {k: draw(OPTION_VALUES[k]) for k in chosen}
    if "framing" in values and packet:
        values["framing"] = draw(st.sampled_from(["none", "sockwire", "SOCKWIRE"]))
    if values:
        body += "?" + "&".join(f"{k}={_quote(v)}" for k, v in values.items())
    return body


@given(endpoint_strings())
def test_canonical_form_round_trips(text: str) -> None:
    endpoint = parse(text)
    canonical = str(endpoint)
    again = parse(canonical)
    assert again == endpoint
    assert str(again) == canonical


def test_non_ascii_path_that_fits_round_trips() -> None:
    path = "000000" + "\x80" * 12 + "\u0800" + "\U00010000" * 6  # 57 bytes in UTF-8
    endpoint = parse("unix:" + _quote(path))
    assert endpoint.path == path
    assert parse(str(endpoint)) == endpoint


@given(st.text(max_size=80))
def test_any_text_parses_or_raises_address_error(text: str) -> None:
    try:
        endpoint = parse(text)
    except sockwire.AddressError as exc:
        assert "\n" not in str(exc)
        assert isinstance(exc, ValueError)
    else:
        assert parse(str(endpoint)) == endpoint


# ---- the documented forms --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "family", "kind"),
    [
        ("unix:/run/app.sock", socket.AF_UNIX, socket.SOCK_STREAM),
        ("unix+seqpacket:/run/app.sock", socket.AF_UNIX, socket.SOCK_SEQPACKET),
        ("unix+dgram:/tmp/log.sock", socket.AF_UNIX, socket.SOCK_DGRAM),
        ("unix:@name", socket.AF_UNIX, socket.SOCK_STREAM),
        ("tcp://127.0.0.1:7000", socket.AF_INET, socket.SOCK_STREAM),
        ("tcp://[::1]:7000", socket.AF_INET6, socket.SOCK_STREAM),
        ("tcp://localhost:0", socket.AF_INET, socket.SOCK_STREAM),
        ("udp://127.0.0.1:7001", socket.AF_INET, socket.SOCK_DGRAM),
        ("tls+tcp://example.test:7443", socket.AF_INET, socket.SOCK_STREAM),
        ("raw://127.0.0.1?proto=icmp", socket.AF_INET, socket.SOCK_RAW),
        ("netlink:route", socket.AF_NETLINK, socket.SOCK_RAW),
        ("fd:3", socket.AF_UNSPEC, 0),
        ("systemd:", socket.AF_UNSPEC, 0),
    ],
)
def test_design_table_forms(text: str, family: int, kind: int) -> None:
    endpoint = parse(text)
    assert endpoint.family == family
    assert endpoint.type == kind
    assert str(endpoint) == text


def test_fields_and_options() -> None:
    ep = parse("unix:/run/app.sock?mode=600&backlog=16")
    assert ep.path == "/run/app.sock"
    assert ep.mode == 0o600
    assert ep.int_option("backlog", 128) == 16
    assert str(ep) == "unix:/run/app.sock?backlog=16&mode=0600"
    assert parse("unix:@svc").sockaddr == b"\0svc"
    assert parse("unix:@svc").is_abstract
    assert parse("tcp://LocalHost:80").host == "localhost"
    assert parse("tcp://[0:0::1]:80").host == "::1"
    assert parse("raw://127.0.0.1").protocol == socket.IPPROTO_ICMP
    assert parse("netlink:route").protocol == 0
    assert parse("fd:3?type=seqpacket").type == socket.SOCK_SEQPACKET
    assert parse("systemd:web").name == "web"
    assert parse("unix:///abs/x.sock").path == "/abs/x.sock"


def test_percent_encoding_of_paths_and_values() -> None:
    ep = parse("unix:/tmp/a%20b%3Fc%26d%25e.sock")
    assert ep.path == "/tmp/a b?c&d%e.sock"
    assert str(ep) == "unix:/tmp/a%20b%3Fc%26d%25e.sock"
    tls = parse("tls+tcp://h.test:1?cafile=/etc/my%20ca%26x.pem")
    assert tls.option("cafile") == "/etc/my ca&x.pem"
    assert "%20" in str(tls)


def test_merge_options_cli_shorthand() -> None:
    ep = parse("tcp://127.0.0.1:7000")
    assert merge_options(ep, {"framing": "len32"}).option("framing") == "len32"
    same = parse("tcp://127.0.0.1:7000?framing=len32")
    assert merge_options(same, {"framing": "LEN32"}) == same
    with pytest.raises(sockwire.AddressError, match="conflicts"):
        merge_options(same, {"framing": "line"})


# ---- bad input: one clear line naming the bad part --------------------------------


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("htp://x:1", ["unknown scheme 'htp'", "unix", "tcp", "udp"]),
        ("tcp://127.0.0.1", ["missing port", "0 to 65535"]),
        ("tcp://127.0.0.1:", ["missing port"]),
        ("tcp://127.0.0.1:65536", ["'65536' out of range"]),
        ("tcp://127.0.0.1:-1", ["'-1' out of range"]),
        ("tcp://127.0.0.1:http", ["'http' out of range"]),
        ("unix:/tmp/a%00b", ["NUL"]),
        ("unix:/tmp/a\0b", ["NUL"]),
        ("unix:/" + "x" * 107, ["108 bytes", "107", "unix:@name"]),
        ("unix:@" + "x" * 108, ["108 bytes", "107"]),
        ("unix:/tmp/x?colour=red", ["unknown option 'colour'", "backlog", "mode"]),
        ("tcp://[::1:7000", ["malformed IPv6 literal", "close the bracket"]),
        ("tcp://[::g]:7000", ["malformed IPv6 address '::g'"]),
        ("tcp://::1:7000", ["malformed IPv6 literal", "brackets"]),
        ("tcp://[127.0.0.1]:7000", ["malformed IPv6 literal"]),
        ("tcp://300.1.2.3:7", ["malformed IPv4 address"]),
        ("tcp://:7000", ["missing host", "127.0.0.1"]),
        ("tcp://bad_host:7", ["malformed host name"]),
        ("unix:", ["missing path"]),
        ("unix:@", ["missing path"]),
        ("unix:@x?mode=0600", ["abstract", "no file", "peer-credential"]),
        ("unix:/x?mode=999", ["bad value '999' for option 'mode'", "octal"]),
        ("unix:/x?backlog", ["has no value"]),
        ("unix:/x?backlog=1&backlog=2", ["given twice"]),
        ("unix:/x?", ["empty query"]),
        ("unix:/x%zz", ["bad percent-escape"]),
        ("netlink:routes", ["unknown netlink protocol", "route"]),
        ("fd:x", ["bad descriptor number"]),
        ("raw://127.0.0.1:5", ["no port"]),
        ("raw://127.0.0.1?proto=bogus", ["'proto'", "icmp"]),
        ("tcp:127.0.0.1:80", ["missing '//'"]),
        ("tcp://h:1/path", ["unexpected path"]),
        ("", ["empty endpoint"]),
    ],
)
def test_bad_endpoints_raise_one_clear_line(text: str, words: list[str]) -> None:
    with pytest.raises(sockwire.AddressError) as info:
        parse(text)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message


def test_address_error_is_a_value_error_with_part_and_choices() -> None:
    with pytest.raises(ValueError) as info:
        parse("bogus:thing")
    err = info.value
    assert isinstance(err, sockwire.AddressError)
    assert err.part == "bogus"
    assert "unix" in err.valid


def test_long_input_is_shortened_in_the_message() -> None:
    with pytest.raises(sockwire.AddressError) as info:
        parse("tcp://" + "a" * 10_000 + ":1")
    assert len(str(info.value)) < 400


def test_endpoint_is_hashable_and_parse_is_idempotent() -> None:
    ep = parse("udp://127.0.0.1:9")
    assert parse(ep) is ep
    assert len({ep, parse("udp://127.0.0.1:9")}) == 1
    assert isinstance(ep, Endpoint)
