"""The connection budgets' choices: who is closed to make room, who is refused, what fits.

The flood itself, against the real daemon, is ``tests/reliability/test_connections.py``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from assistant.config import load_settings
from assistant.daemon.connections import ConnectionBudget, ConnectionLimits, open_file_limit
from assistant.errors import ConfigError


class Conn:
    """A connection as the budget sees it; ``evicted`` when the budget closed it."""

    def __init__(self, authenticated: bool = False, busy: bool = False,
                 silent: bool = True) -> None:
        self.authenticated = authenticated
        self.busy = busy
        self.silent = silent
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def _budget(limits: ConnectionLimits) -> ConnectionBudget:
    """A budget without the grace a brand-new connection has (tested on its own below)."""
    return ConnectionBudget(limits, grace_s=0)


def test_the_oldest_unauthenticated_connection_makes_room_first() -> None:
    budget = _budget(ConnectionLimits(tcp=3, tcp_per_peer=3, unix=16))
    idle, silent_old, silent_new = Conn(authenticated=True), Conn(), Conn()
    for conn in (idle, silent_old, silent_new):
        assert budget.admit(conn, "127.0.0.1")
    newcomer = Conn()
    assert budget.admit(newcomer, "127.0.0.1")
    assert silent_old.evicted and not idle.evicted and not silent_new.evicted
    assert budget.count() == 3


def test_then_the_oldest_idle_one_and_busy_ones_never() -> None:
    budget = _budget(ConnectionLimits(tcp=2, tcp_per_peer=2, unix=16))
    busy, idle = Conn(authenticated=True, busy=True), Conn(authenticated=True)
    assert budget.admit(busy, "127.0.0.1") and budget.admit(idle, "127.0.0.1")
    assert budget.admit(Conn(), "127.0.0.1")
    assert idle.evicted and not busy.evicted


def test_a_new_connection_is_refused_when_all_are_authenticated_and_busy() -> None:
    budget = _budget(ConnectionLimits(tcp=2, tcp_per_peer=2, unix=16))
    held = [Conn(authenticated=True, busy=True) for _ in range(2)]
    for conn in held:
        assert budget.admit(conn, "127.0.0.1")
    refused = Conn()
    assert not budget.admit(refused, "127.0.0.1")
    budget.release(refused)  # a refused connection closing is not counted out twice
    assert budget.count() == 2 and budget.refused == 1
    assert not any(c.evicted for c in held)


def test_one_peer_makes_room_among_its_own_connections() -> None:
    budget = _budget(ConnectionLimits(tcp=10, tcp_per_peer=2, unix=16))
    other = Conn()
    mine = [Conn(), Conn()]
    assert budget.admit(other, "127.0.0.2")
    for conn in mine:
        assert budget.admit(conn, "127.0.0.1")
    assert budget.admit(Conn(), "127.0.0.1")
    assert mine[0].evicted and not other.evicted
    assert budget.count("127.0.0.1") == 2 and budget.count("127.0.0.2") == 1


def test_the_unix_socket_has_its_own_budget() -> None:
    budget = _budget(ConnectionLimits(tcp=1, tcp_per_peer=1, unix=16))
    assert budget.admit(Conn(authenticated=True, busy=True), "127.0.0.1")
    assert not budget.admit(Conn(authenticated=True, busy=True), "127.0.0.1")
    owners = [Conn(authenticated=True, busy=True) for _ in range(16)]
    assert all(budget.admit(conn, None) for conn in owners)
    assert budget.count() == 1


def test_the_open_files_needed_and_budgets_shrunk_to_fit() -> None:
    limits = ConnectionLimits(tcp=512, tcp_per_peer=256, unix=2048)
    assert limits.open_files() == 512 + 2048 + 2 * 3 * 512 + 64 + 1024
    assert ConnectionLimits(tcp=0, tcp_per_peer=256, unix=2048).open_files() == 4672
    assert limits.within(limits.open_files()) is limits
    small = limits.within(5000)
    assert small.open_files() <= 5000
    assert small.tcp_per_peer <= small.tcp < 512 and small.unix < 2048


def test_shrinking_never_raises_a_budget_configured_below_its_floor() -> None:
    """The floor of 16 connections was applied to budgets configured smaller (``max(16, …)``):
    tcp = 4 under a tight open-file limit became 16."""
    tiny = ConnectionLimits(tcp=4, tcp_per_peer=2, unix=8).within(10)
    assert (tiny.tcp, tiny.tcp_per_peer, tiny.unix) == (4, 2, 8)
    floored = ConnectionLimits(tcp=512, tcp_per_peer=256, unix=2048).within(10)
    assert (floored.tcp, floored.unix) == (16, 16)


def test_the_soft_limit_is_raised_never_lowered() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert open_file_limit(300) == 300
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 300
        assert open_file_limit(100) == 300
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_hard_limit_too_low_shrinks_the_budgets_and_says_so() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 5000:
        pytest.skip(f"hard open-file limit {hard} is below 5000")
    # In a child: a hard limit once lowered cannot be raised again without privileges.
    script = (
        "import json, resource\n"
        "from assistant.config import load_settings\n"
        "from assistant.daemon.server import connection_limits\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 5000))\n"
        "problems = []\n"
        "limits = connection_limits(load_settings({'daemon': {'tcp': '127.0.0.1:1'}}, "
        "environ={}), problems)\n"
        "print(json.dumps([limits.tcp, limits.tcp_per_peer, limits.unix, "
        "limits.open_files(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], problems]))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    tcp, per_peer, unix, open_files, soft, problems = json.loads(out)
    assert soft == 5000 and open_files <= 5000
    assert per_peer <= tcp < 512 and unix < 2048
    assert len(problems) == 1 and "open-file limit (5000)" in problems[0], problems


def test_per_peer_over_the_total_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_tcp_connections_per_peer"):
        load_settings({"daemon": {"max_tcp_connections": 10,
                                  "max_tcp_connections_per_peer": 20}}, environ={})


def test_a_brand_new_unauthenticated_connection_is_not_closed_to_make_room() -> None:
    """The flood's newcomers closed the oldest unauthenticated connection, which could be a
    client's own, accepted a moment before and yet to send its request with the token."""
    budget = ConnectionBudget(ConnectionLimits(tcp=2, tcp_per_peer=2, unix=16), grace_s=30)
    legit, flood = Conn(), Conn()
    assert budget.admit(legit, "127.0.0.1") and budget.admit(flood, "127.0.0.1")
    assert not budget.admit(Conn(), "127.0.0.1")  # refused: both are within their grace
    assert not legit.evicted and not flood.evicted
    budget.grace_s = 0  # as if 30 s had passed: the oldest silent one goes first
    assert budget.admit(Conn(), "127.0.0.1")
    assert legit.evicted and not flood.evicted


def test_refused_connections_linger_within_a_cap_of_their_own() -> None:
    """A refused connection stays open until its client has read the 503 (protocol.py); at
    most LINGER_MAX do, and the open-file limit counts them."""
    from assistant.daemon.connections import LINGER_MAX

    budget = _budget(ConnectionLimits(tcp=1, tcp_per_peer=1, unix=16))
    lingering = [Conn() for _ in range(LINGER_MAX)]
    assert all(budget.linger(conn) for conn in lingering)
    assert not budget.linger(Conn())  # closed at once instead
    budget.release(lingering[0])  # its client closed
    assert budget.lingering == LINGER_MAX - 1 and budget.linger(Conn())
    assert budget.count() == 0  # lingering is not holding a place in the budget


def test_a_newcomer_whose_request_arrived_closes_a_young_silent_connection() -> None:
    """Under a flood every connection is within its grace: a client's new connection was
    refused though its request was there. Now it takes the oldest young silent one's place;
    a young one that has sent something is still spared."""
    budget = ConnectionBudget(ConnectionLimits(tcp=2, tcp_per_peer=2, unix=16), grace_s=30)
    talking, silent = Conn(silent=False), Conn()
    assert budget.admit(talking, "127.0.0.1") and budget.admit(silent, "127.0.0.1")
    assert not budget.admit(Conn(), "127.0.0.1")  # nothing sent yet: refused, as before
    client = Conn(silent=False)
    assert budget.admit(client, "127.0.0.1", sent=True)
    assert silent.evicted and not talking.evicted
    assert not budget.admit(Conn(silent=False), "127.0.0.1", sent=True)  # none silent left
    assert not talking.evicted and not client.evicted
