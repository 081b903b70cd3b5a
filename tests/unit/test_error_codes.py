"""The error-code table, read both ways: what the daemon sends, the client raises again."""

from __future__ import annotations

import pytest

from assistant.error_codes import TABLE, from_http, http_error
from assistant.errors import (
    AssistantError,
    ModelError,
    ModelLoadError,
    ModelNotFound,
    QueueFull,
    RequestError,
)


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.error.__name__)
def test_each_error_travels_and_comes_back_as_its_kind(entry: object) -> None:
    error = entry.error  # type: ignore[attr-defined]
    exc = QueueFull("busy", retry_after=7) if error is QueueFull else error("it broke")
    status, body, headers = http_error(exc)
    assert status == entry.status and body["error"]["code"] == entry.code  # type: ignore[attr-defined]
    back = from_http(status, body, {k.lower(): v for k, v in headers.items()})
    # ModelError shares ModelLoadError's code: read back, it is the more precise one (and
    # HostStopped and BackendFailed come back as themselves by their Retry-After)
    assert type(back) is (ModelLoadError if error is ModelError else error)
    assert back.message == exc.message
    if error is QueueFull:
        assert headers["Retry-After"] == "7" and back.retry_after == 7  # type: ignore[attr-defined]
    if error is ModelNotFound:
        assert back.hint and "assistant models list" in back.hint


def test_request_errors_keep_their_own_status_code_and_param() -> None:
    status, body, headers = http_error(RequestError("no", status=404, code="not_found",
                                                    param="id"))
    assert (status, headers) == (404, {})
    back = from_http(status, body, {})
    assert isinstance(back, RequestError)
    assert (back.status, back.code, back.param, back.message) == (404, "not_found", "id", "no")


def test_an_unexpected_error_says_only_where_to_look() -> None:
    status, body, _ = http_error(ValueError("/home/someone/secret"))
    assert status == 500 and "secret" not in str(body)
    assert body["error"]["code"] == "internal_error"
    assert isinstance(from_http(500, "not json", {}, fallback="boom"), RequestError)
    assert from_http(502, None, {}, fallback="bad gateway").message == "bad gateway"
    assert isinstance(from_http(500, body, {}), AssistantError)
