"""The sans-IO core of ``sockwire ping``: requests out, packets in, statistics out.

:class:`Session` never touches a socket or a clock: the driver in
``ping_cmd`` passes ``now`` (monotonic seconds) to every call, sends the
bytes :meth:`Session.request` returns, and hands every packet it receives
to :meth:`Session.receive`, which says what it was. Tests feed it crafted
packets directly.

Rules, as iputils ping has them unless said otherwise:

* Requests carry ``ident`` and seq 1, 2, ... (16-bit, wrapping) and the
  same payload; a reply matches by ident (raw sockets; a ping socket's
  kernel matches it for us and rewrites the ident), by source address and
  by a seq we sent. Anything else (other programs' pings, our own looped-back
  request on a raw socket) is ignored: ``receive`` returns None.
* A matching reply whose checksum does not verify, or whose payload differs
  from what we sent, is *corrupt*: shown and counted, never a reply
  (iputils counts it and flags it; we refuse to time a packet we cannot
  trust). A second reply to a seq is a duplicate (``DUP!``): shown,
  counted, and left out of the RTT statistics.
* An ICMP error quoting one of our requests (destination unreachable, time
  exceeded) is an *error*: shown and counted.
* Each request waits ``wait`` seconds (``-W``) for its reply; then it is
  reported once as unanswered. A reply arriving later still counts.
* The session ends when ``count`` requests are sent and each is answered or
  has waited ``wait`` seconds, when ``count`` replies have arrived, or when
  the overall ``deadline`` (``-w``) passes. Loss is transmitted - received.
* RTT statistics: min/avg/max and mdev = sqrt(mean(rtt^2) - mean(rtt)^2),
  the population standard deviation iputils prints.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

from .. import icmp
from ..errors import BadFrame

__all__ = ["Corrupt", "Event", "Failure", "Reply", "Session", "payload_for", "same_host"]

#: Unreachable codes (RFC 792 / RFC 4443) in the words ping prints.
_UNREACH4 = {
    0: "Destination Net Unreachable",
    1: "Destination Host Unreachable",
    2: "Destination Protocol Unreachable",
    3: "Destination Port Unreachable",
    4: "Frag needed",
    5: "Source Route Failed",
    9: "Destination Net Prohibited",
    10: "Destination Host Prohibited",
    13: "Communication prohibited by filter",
}
_UNREACH6 = {
    0: "No route",
    1: "Administratively prohibited",
    2: "Beyond scope of source address",
    3: "Address unreachable",
    4: "Port unreachable",
}
_ERRORS4 = frozenset({icmp.DEST_UNREACHABLE, 4, 5, icmp.TIME_EXCEEDED, 12})
_ERRORS6 = frozenset(
    {icmp.DEST6_UNREACHABLE, icmp.PACKET6_TOO_BIG, icmp.TIME6_EXCEEDED, icmp.PARAMETER6_PROBLEM}
)


def payload_for(size: int) -> bytes:
    """The payload of every request: bytes 0x08, 0x09, ... as iputils fills its pattern."""
    return bytes((8 + i) & 0xFF for i in range(size))


def same_host(a: str, b: str) -> bool:
    """Equal addresses, whatever their spelling (``::1`` and ``0::1``; ``fe80::1%lo``)."""
    try:
        return ipaddress.ip_address(a.split("%", 1)[0]) == ipaddress.ip_address(b.split("%", 1)[0])
    except ValueError:
        return a == b


@dataclass(frozen=True, slots=True)
class Reply:
    """An echo reply to one of our requests."""

    seq: int
    source: str
    size: int  # ICMP bytes: header and payload, as ping's "64 bytes from"
    rtt: float  # seconds
    ttl: int | None
    duplicate: bool = False
    late: bool = False  # after its -W wait had passed

    def line(self) -> str:
        ttl = f" ttl={self.ttl}" if self.ttl is not None else ""
        text = f"{self.size} bytes from {self.source}: icmp_seq={self.seq}{ttl}"
        text += f" time={_ms(self.rtt)} ms"
        if self.duplicate:
            text += " (DUP!)"
        if self.late:
            text += " (late: after -W)"
        return text


@dataclass(frozen=True, slots=True)
class Failure:
    """An ICMP error about one of our requests (unreachable, time exceeded)."""

    seq: int
    source: str
    text: str

    def line(self) -> str:
        return f"From {self.source} icmp_seq={self.seq} {self.text}"


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A packet from the target that claims to answer us but cannot be trusted."""

    seq: int | None
    source: str
    reason: str

    def line(self) -> str:
        seq = f" icmp_seq={self.seq}" if self.seq is not None else ""
        return f"From {self.source}{seq}: {self.reason}; not counted as a reply"


Event = Reply | Failure | Corrupt


class Session:
    """One ping run's state: what was sent when, what came back, the statistics."""

    def __init__(
        self,
        target: str,
        *,
        ipv6: bool,
        ident: int,
        size: int,
        count: int,
        interval: float,
        wait: float,
        started: float,
        deadline: float | None = None,
        match_ident: bool = True,
        ip_header: bool = False,
    ) -> None:
        if not 0 <= ident <= 0xFFFF:
            raise ValueError(f"ident is 16-bit, not {ident}")
        if count < 1 or interval <= 0 or wait <= 0:
            raise ValueError("count, interval and wait must be positive")
        self.target = target
        self.ipv6 = ipv6
        self.ident = ident
        self.payload = payload_for(size)
        self.count = count
        self.interval = interval
        self.wait = wait
        self.started = started
        self.deadline = None if deadline is None else started + deadline
        self.match_ident = match_ident
        self.ip_header = ip_header
        self.transmitted = 0
        self.received = 0
        self.duplicates = 0
        self.errors = 0
        self.corrupt = 0
        # seq (16-bit) -> [send time, replies seen, reported unanswered]; bounded by 65536
        self._sent: dict[int, list[float | int | bool]] = {}
        self._waiting: dict[int, float] = {}  # seq -> when its wait ends (unanswered only)
        self._rtt_n = 0
        self._rtt_sum = 0.0
        self._rtt_sum2 = 0.0
        self._rtt_min = math.inf
        self._rtt_max = 0.0

    # ---- sending

    @property
    def next_send(self) -> float | None:
        """When the next request is due, or None when all are sent."""
        if self.transmitted >= self.count:
            return None
        return self.started + self.transmitted * self.interval

    def due(self, now: float) -> bool:
        at = self.next_send
        return at is not None and now >= at and not self.finished(now)

    def request(self, now: float) -> bytes:
        """The next echo request's bytes; it counts as transmitted from now."""
        self.transmitted += 1
        seq = self.transmitted & 0xFFFF
        self._sent[seq] = [now, 0, False]
        self._waiting[seq] = now + self.wait
        return icmp.echo_request(self.ident, seq, self.payload, ipv6=self.ipv6)

    def unsent(self) -> None:
        """The last request never left (sendto failed): it does not count as transmitted."""
        seq = self.transmitted & 0xFFFF
        self._sent.pop(seq, None)
        self._waiting.pop(seq, None)
        self.transmitted -= 1

    # ---- receiving

    def receive(
        self,
        packet: bytes,
        source: str,
        now: float,
        *,
        ttl: int | None = None,
        local: str | None = None,
    ) -> Event | None:
        """What ``packet`` from ``source`` is to us; None when it is not about our requests.

        ``local``: our own address, for the ICMPv6 pseudo-header checksum.
        """
        from_target = same_host(source, self.target)
        try:
            if self.ipv6:
                msg = icmp.parse(packet, ipv6=(source.split("%", 1)[0], local) if local else None)
            else:
                msg = icmp.parse(packet, ip_header=self.ip_header)
        except BadFrame as exc:
            if not from_target:
                return None
            self.corrupt += 1
            return Corrupt(None, source, f"malformed ICMP: {exc}")
        if ttl is None and msg.ip is not None:
            ttl = msg.ip.ttl
        reply_type = icmp.ECHO6_REPLY if self.ipv6 else icmp.ECHO_REPLY
        if msg.type == reply_type and msg.code == 0:
            return self._reply(msg, source, now, ttl, from_target)
        if msg.type in (_ERRORS6 if self.ipv6 else _ERRORS4):
            return self._error(msg, source)
        return None

    def _reply(
        self, msg: icmp.IcmpPacket, source: str, now: float, ttl: int | None, from_target: bool
    ) -> Event | None:
        if self.match_ident and msg.ident != self.ident:
            return None  # another program's ping
        if not from_target:
            return None
        state = self._sent.get(msg.seq)
        if state is None:
            return None  # not a seq we sent (or one from long ago)
        ip_ok = msg.ip is None or msg.ip.checksum_ok
        if not msg.checksum_ok or not ip_ok:
            self.corrupt += 1
            which = "ICMP" if not msg.checksum_ok else "IPv4 header"
            return Corrupt(msg.seq, source, f"BAD CHECKSUM ({which})")
        if msg.payload != self.payload:
            self.corrupt += 1
            return Corrupt(
                msg.seq,
                source,
                f"wrong data ({len(msg.payload)} bytes, "
                f"first difference at byte {_first_difference(msg.payload, self.payload)})",
            )
        sent_at = float(state[0])
        rtt = max(0.0, now - sent_at)
        state[1] = int(state[1]) + 1
        size = len(msg.payload) + 8
        if int(state[1]) > 1:
            self.duplicates += 1
            return Reply(msg.seq, source, size, rtt, ttl, duplicate=True)
        late = self._waiting.pop(msg.seq, None) is None
        self.received += 1
        self._rtt_n += 1
        self._rtt_sum += rtt
        self._rtt_sum2 += rtt * rtt
        self._rtt_min = min(self._rtt_min, rtt)
        self._rtt_max = max(self._rtt_max, rtt)
        return Reply(msg.seq, source, size, rtt, ttl, late=late)

    def _error(self, msg: icmp.IcmpPacket, source: str) -> Event | None:
        try:
            quoted = icmp.quoted_echo(msg, ipv6=self.ipv6)
        except BadFrame:
            return None  # a malformed error about someone's packet: not evidence about ours
        if quoted is None or not same_host(quoted.dst, self.target):
            return None
        if self.match_ident and quoted.ident != self.ident:
            return None
        if quoted.seq not in self._sent:
            return None
        self.errors += 1
        self._waiting.pop(quoted.seq, None)  # answered, if not with a reply
        return Failure(quoted.seq, source, self._error_text(msg))

    def _error_text(self, msg: icmp.IcmpPacket) -> str:
        if self.ipv6:
            if msg.type == icmp.DEST6_UNREACHABLE:
                return f"Destination unreachable: {_UNREACH6.get(msg.code, f'code {msg.code}')}"
            if msg.type == icmp.PACKET6_TOO_BIG:
                return "Packet too big"
            if msg.type == icmp.TIME6_EXCEEDED:
                return "Time exceeded: Hop limit" if msg.code == 0 else "Time exceeded"
            return f"Parameter problem: code {msg.code}"
        if msg.type == icmp.DEST_UNREACHABLE:
            return _UNREACH4.get(msg.code, f"Dest Unreachable, Bad Code: {msg.code}")
        if msg.type == icmp.TIME_EXCEEDED:
            return "Time to live exceeded" if msg.code == 0 else "Frag reassembly time exceeded"
        return f"ICMP type {msg.type} code {msg.code}"

    # ---- time passing

    def expire(self, now: float) -> list[int]:
        """Seqs whose wait has just passed unanswered (each reported once)."""
        gone = sorted((at, seq) for seq, at in self._waiting.items() if now >= at)
        for _, seq in gone:
            del self._waiting[seq]
        return [seq for _, seq in gone]

    def wake_at(self) -> float | None:
        """The next moment something happens without a packet arriving."""
        moments = [m for m in (self.next_send, self.deadline) if m is not None]
        moments.extend(self._waiting.values())
        return min(moments) if moments else None

    def finished(self, now: float) -> bool:
        if self.deadline is not None and now >= self.deadline:
            return True
        if self.received >= self.count:
            return True
        return self.transmitted >= self.count and not self._waiting

    # ---- results

    @property
    def lost(self) -> int:
        return max(0, self.transmitted - self.received)

    def rtt(self) -> tuple[float, float, float, float] | None:
        """min, avg, max, mdev in seconds; None before the first reply."""
        if not self._rtt_n:
            return None
        avg = self._rtt_sum / self._rtt_n
        mdev = math.sqrt(max(0.0, self._rtt_sum2 / self._rtt_n - avg * avg))
        return self._rtt_min, avg, self._rtt_max, mdev

    def summary(self, name: str, elapsed: float) -> list[str]:
        """The closing lines, as iputils prints them."""
        parts = [f"{self.transmitted} packets transmitted", f"{self.received} received"]
        if self.duplicates:
            parts.append(f"+{self.duplicates} duplicates")
        if self.corrupt:
            parts.append(f"+{self.corrupt} corrupted")
        if self.errors:
            parts.append(f"+{self.errors} errors")
        if self.transmitted:
            parts.append(f"{self.lost * 100 / self.transmitted:g}% packet loss")
        parts.append(f"time {round(elapsed * 1000)}ms")
        lines = [f"--- {name} ping statistics ---", ", ".join(parts)]
        stats = self.rtt()
        if stats is not None:
            lines.append("rtt min/avg/max/mdev = " + "/".join(_ms(v) for v in stats) + " ms")
        return lines


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))
