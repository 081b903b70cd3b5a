"""A model host killed at any moment fails its requests as a 503 to retry (issue 18), also
when it dies before its reader saw it end, or while it loads a model. The fault soak
(tests/integration/test_fault_soak.py) found both answering 500, or 503 without Retry-After
and telling the user to check the model file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from assistant.error_codes import http_error
from assistant.errors import HostError, HostStopped
from assistant.models.host_process import HostProcess
from tests.unit.test_model_budget import manager


@pytest.mark.asyncio
async def test_a_request_sent_to_a_host_that_just_died_is_a_host_crash() -> None:
    # A process that no longer reads its stdin, as a killed host the reader has not yet seen
    # end: writing to it fails with a pipe error.
    proc = await asyncio.create_subprocess_exec(
        "sh", "-c", "exec 0<&-; sleep 30", stdin=asyncio.subprocess.PIPE)
    host = HostProcess()
    host._proc = proc
    try:
        await asyncio.sleep(0.2)
        with pytest.raises(HostError) as failed:
            await host.call("info")
        assert failed.value.kind == "HostCrashed"
    finally:
        proc.kill()
        await proc.wait()


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["HostCrashed", "HostHung"])
async def test_a_host_gone_mid_load_is_a_503_to_retry_not_a_bad_file(
        tmp_path: Path, kind: str) -> None:
    models, _ = manager(tmp_path, 8192)

    async def call(op: str, **request: Any) -> dict[str, Any]:
        raise HostError(kind, "the model host stopped unexpectedly")

    models.host.call = call  # type: ignore[method-assign]
    with pytest.raises(HostStopped) as failed:
        await models.load("a")
    status, body, headers = http_error(failed.value)
    assert (status, body["error"]["code"], headers) == (503, "model_unavailable",
                                                        {"Retry-After": "1"})
    assert "a" not in models.resident
