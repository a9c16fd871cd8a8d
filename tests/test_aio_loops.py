"""sockwire.aio.run and the loop kinds; a Channel bound to one loop refuses another."""

from __future__ import annotations

import asyncio

import pytest

from sockwire import aio
from sockwire.errors import InvalidOperation


@pytest.mark.parametrize("kind", ["asyncio", "uvloop", None])
def test_run_makes_the_loop_asked_for(kind: str | None) -> None:
    async def which() -> str:
        return type(asyncio.get_running_loop()).__module__

    module = aio.run(which, loop=kind)  # a coroutine function works as well as a coroutine
    assert module.startswith("uvloop") == (kind == "uvloop")


def test_an_unknown_loop_kind_is_refused() -> None:
    with pytest.raises(InvalidOperation, match="asyncio, uvloop"):
        aio.run(asyncio.sleep(0), loop="trio")


def test_a_channel_stays_on_its_loop() -> None:
    a, b = aio.pipe()

    async def first() -> None:
        await a.send(b"x")
        assert await b.recv(timeout=5) == b"x"

    async def second() -> None:
        with pytest.raises(InvalidOperation, match="another event loop"):
            await b.recv(timeout=1)

    try:
        aio.run(first())
        aio.run(second())
    finally:
        a.abort()
        b.abort()


async def test_a_user_loop_runs_sockwire_aio_as_it_is() -> None:
    """The test runner made this loop (asyncio or uvloop): nothing else is needed."""
    a, b = aio.pipe("seqpacket")
    async with a, b:
        await a.send(b"on your loop")
        assert await b.recv(timeout=5) == b"on your loop"
