"""Requests naming made-up models leave nothing behind; keep_alive is range-checked
(issue 21, item 10).

Before this test's commit each ``POST /api/models/NAME/load`` of an unknown NAME kept an
``asyncio.Lock`` for it (3,000 bogus names: 3,000 locks, never freed), a turn naming one kept
a queue, and ``keep_alive`` took any integer (-5, 10**18).
"""

from __future__ import annotations

import pytest

from assistant.config import KEEP_ALIVE_MAX
from assistant.testing import InProcessDaemon

BOGUS = 500


@pytest.mark.asyncio
async def test_unknown_model_names_keep_no_state(fake_daemon: InProcessDaemon) -> None:
    models = fake_daemon.services.models
    locks, queues = dict(models._locks), dict(models.queues)
    async with fake_daemon.http(timeout=60) as http:
        for i in range(BOGUS):
            response = await http.post(f"/api/models/bogus-{i}/load")
            assert response.status_code == 404, response.text
            assert response.json()["error"]["code"] == "model_not_found"
        for i in range(3):  # (each is counted as chat's failure today: item 1's to mend)
            events = await http.post("/api/turns", json={"text": "/chat hi",
                                                         "model": f"nope-{i}"})
            assert f"no model named 'nope-{i}'" in events.text, events.text
    assert models._locks.keys() == locks.keys()
    assert models.queues.keys() == queues.keys()


@pytest.mark.asyncio
@pytest.mark.parametrize("keep_alive", [-2, -5, KEEP_ALIVE_MAX + 1, 10**18])
async def test_keep_alive_out_of_range_is_a_400_naming_it(
    fake_daemon: InProcessDaemon, keep_alive: int,
) -> None:
    async with fake_daemon.http(timeout=60) as http:
        response = await http.post("/api/models/fake/load", params={"keep_alive": keep_alive})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "keep_alive" and "keep_alive" in error["message"]
    assert "-1" in error["message"]  # says what is allowed


def test_the_cli_refuses_a_keep_alive_out_of_range_before_asking_the_daemon() -> None:
    from click.testing import CliRunner

    from assistant.cli import main

    result = CliRunner().invoke(main, ["models", "load", "x", "--keep-alive", "-7"])
    assert result.exit_code == 2 and "--keep-alive" in result.output
    assert "-7 is not in the range" in result.output
