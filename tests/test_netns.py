"""netns.py: private network namespaces, as root and as an unprivileged user, in forked children.

Each test forks: entering a namespace changes the calling process for good,
and a user namespace needs a single-threaded process.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from sockwire import netlink, netns
from sockwire.errors import InvalidOperation
from tests.helpers import need, need_root, need_tool

NOBODY = 65534
PR_SET_DUMPABLE = 4


def _in_child(fn: Callable[[], Any], *, uid: int | None = None) -> Any:
    """Run ``fn`` in a forked child (optionally as ``uid``); its result or error comes back."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        try:
            os.close(read_end)
            if uid is not None:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                # setuid without exec leaves the process non-dumpable, and its
                # /proc/self owned by root: the id maps could not be written
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            result: dict[str, Any] = {"value": fn()}
        except BaseException as exc:  # report everything to the parent
            result = {"error": type(exc).__name__, "message": str(exc)}
        try:
            os.write(write_end, json.dumps(result).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return json.loads(data)


def _links_after_enter(user: bool | None) -> dict[str, Any]:
    outside = os.readlink("/proc/self/ns/net")
    ns = netns.enter(user=user)
    return {
        "user": ns.user,
        "moved": os.readlink("/proc/self/ns/net") != outside,
        "admin": netns.has_capability(netns.CAP_NET_ADMIN),
        "raw": netns.has_capability(netns.CAP_NET_RAW),
        "links": [[link.name, link.up] for link in netlink.links()],
    }


@pytest.mark.timeout(20)
def test_root_gets_a_private_network_namespace_with_lo_up() -> None:
    need_root()
    need_tool("ip")
    result = _in_child(lambda: _links_after_enter(None))
    assert "error" not in result, result
    value = result["value"]
    assert value["user"] is False  # root has CAP_SYS_ADMIN: no user namespace needed
    assert value["moved"]
    assert value["links"] == [["lo", True]]  # nothing of the host's network is visible


@pytest.mark.timeout(20)
def test_an_unprivileged_user_gets_one_through_a_user_namespace() -> None:
    need_root()  # to become uid 65534 in the child
    need_tool("ip")
    result = _in_child(lambda: _links_after_enter(None), uid=NOBODY)
    need(
        result.get("error") != "PermissionDenied",
        f"unprivileged user namespaces are disabled here: {result.get('message')}",
    )
    assert "error" not in result, result
    value = result["value"]
    assert value["user"] is True
    assert value["moved"] and value["admin"] and value["raw"]
    assert value["links"] == [["lo", True]]


def test_capabilities_are_read_from_proc() -> None:
    need_root()
    assert netns.has_capability(netns.CAP_NET_ADMIN)
    result = _in_child(lambda: netns.has_capability(netns.CAP_NET_RAW), uid=NOBODY)
    assert result == {"value": False}


@pytest.mark.timeout(20)
def test_a_network_namespace_alone_needs_a_capability() -> None:
    need_root()
    result = _in_child(lambda: netns.unshare(netns.CLONE_NEWNET), uid=NOBODY)
    assert result["error"] == "PermissionDenied"
    assert "CAP_SYS_ADMIN" in result["message"]


def test_a_user_namespace_needs_a_single_threaded_process() -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        with pytest.raises(InvalidOperation, match="fork first"):
            netns.unshare(netns.CLONE_NEWUSER | netns.CLONE_NEWNET)
    finally:
        stop.set()
        thread.join()


def _veth_pair() -> list[list[Any]]:
    netns.enter()
    netns.add_veth("sw-a", "sw-b", os.getpid())  # both ends here: the far pid is our own
    return [[link.name, link.kind] for link in netlink.links() if link.name != "lo"]


@pytest.mark.timeout(20)
def test_a_veth_pair_in_a_private_namespace() -> None:
    need_root()
    need_tool("ip")
    result = _in_child(_veth_pair, uid=NOBODY)
    assert "error" not in result, result
    assert sorted(result["value"]) == [["sw-a", "veth"], ["sw-b", "veth"]]
