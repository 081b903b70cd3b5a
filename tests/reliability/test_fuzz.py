"""Schema fuzz: requests generated from the daemon's own OpenAPI description; never a 5xx.

Each case picks an operation of ``app.openapi()``, fills its path and query parameters and its
JSON body from the schema (``schema_strategy``, a small JSON-Schema-to-hypothesis mapping; the
hypothesis-jsonschema package does not work with current hypothesis), and sometimes breaks the
body (junk bytes, arbitrary JSON, wrong types). 2,500 cases run in-process through
``httpx.ASGITransport`` on the real app, store and plugins with the fake model; 200 more go to
the real daemon over its socket.

How we checked it finds what it should: before the ``HTTPException`` handler in ``build_app``
the in-process run failed within seconds: a raw-bytes body gave FastAPI's own
``{"detail": "There was an error parsing the body"}`` instead of our error shape. Re-checked
by removing the ``RequestValidationError`` handler: the in-process run failed in 7 s on
``POST /v1/embeddings`` with no body (422 ``{"detail": [...]}``, not our shape).
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.testing import RunningDaemon, in_process_daemon

IN_PROCESS_CASES = 2500
REAL_DAEMON_CASES = 200
SKIP = {
    ("POST", "/api/models/{name}/load"),  # loads real model files: covered by test_model_files
    ("POST", "/api/plugins/reload"),  # restarts the daemon in place: test_plugins_reload
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=5),
    max_leaves=20,
)
path_text = st.text(string.ascii_letters + string.digits + "-_.~%", min_size=1, max_size=40)


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if (method.upper(), path) not in SKIP:
                out.append((method.upper(), path, op))
    return out


def schema_strategy(schema: dict[str, Any], components: dict[str, Any],
                    depth: int = 0) -> st.SearchStrategy[Any]:
    """Values valid for the JSON Schema subset FastAPI emits (and, past a depth, anything)."""
    if depth > 6:
        return json_values
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return st.deferred(lambda: schema_strategy(components["schemas"][name], components,
                                                   depth + 1))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([schema_strategy(s, components, depth + 1) for s in schema[key]])
    if "allOf" in schema:
        return schema_strategy(schema["allOf"][0], components, depth + 1)
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "string":
        return st.text(min_size=schema.get("minLength", 0),
                       max_size=min(schema.get("maxLength", 200), 200))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(schema.get("minimum", -1e9), schema.get("maximum", 1e9),
                         allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(schema_strategy(schema.get("items", {}), components, depth + 1),
                        min_size=schema.get("minItems", 0),
                        max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: schema_strategy(v, components, depth + 1) for k, v in props.items()
             if k in required},
            optional={k: schema_strategy(v, components, depth + 1) for k, v in props.items()
                      if k not in required})
    return json_values


def body_strategy(op: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    content = op.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    broken = st.one_of(json_values, st.binary(max_size=200).map(lambda b: ("raw", b)))
    if schema is None:
        return st.one_of(st.none(), broken)
    valid = schema_strategy(schema, components)
    return st.one_of(valid, valid, broken)


@st.composite
def requests(draw: st.DrawFn, spec: dict[str, Any]) -> tuple[str, str, dict[str, Any], Any]:
    method, path, op = draw(st.sampled_from(operations(spec)))
    params: dict[str, Any] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            path = path.replace("{" + param["name"] + "}", draw(path_text))
        elif param["in"] == "query" and draw(st.booleans()):
            params[param["name"]] = draw(st.one_of(
                st.text(max_size=20), st.integers(-10**12, 10**12).map(str),
                st.sampled_from(["true", "false", "", "-1", "1e309", "2024-13-45"])))
    body = draw(body_strategy(op, spec.get("components", {})))
    return method, path, params, body


def send_kwargs(params: dict[str, Any], body: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": params}
    if isinstance(body, tuple) and body and body[0] == "raw":
        kwargs["content"] = body[1]
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["content"] = json.dumps(body)
        kwargs["headers"] = {"Content-Type": "application/json"}
    return kwargs


def check(response: httpx.Response, what: tuple[str, str]) -> None:
    assert response.status_code < 500 or response.status_code == 503, (
        what, response.status_code, response.text[:500])
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
            "application/json"):
        assert "error" in response.json(), (what, response.text[:300])


@pytest.fixture
def fake_app(isolated_env: dict[str, str], tmp_path: Any,
             monkeypatch: pytest.MonkeyPatch,
             ) -> Iterator[tuple[Any, Any, asyncio.AbstractEventLoop]]:
    """The real app, store and plugins; the fake model and embedder instead of the host."""
    monkeypatch.setenv("ASSISTANT_MODELS_DIR", str(tmp_path / "no-models"))
    monkeypatch.setenv("ASSISTANT_MODEL", "fake")
    monkeypatch.setenv("ASSISTANT_MODELS__EMBEDDING", "fake-embed")
    from assistant.config import load_settings

    loop = asyncio.new_event_loop()
    daemon = in_process_daemon(load_settings(), token="fuzz-token")
    started = loop.run_until_complete(daemon.__aenter__())
    yield started.asgi, started.app, loop
    loop.run_until_complete(daemon.__aexit__(None, None, None))
    loop.close()


def test_openapi_fuzz_in_process(
    fake_app: tuple[Any, Any, asyncio.AbstractEventLoop],
) -> None:
    app, fastapi_app, loop = fake_app
    spec = fastapi_app.openapi()
    assert len(operations(spec)) >= 10
    # The app sees a Unix-socket peer, as the daemon's socket gives it (no token needed).
    transport = httpx.ASGITransport(app=_unix_peer(app))
    client = httpx.AsyncClient(transport=transport, base_url="http://assistant", timeout=30)
    cases = 0

    @settings(max_examples=IN_PROCESS_CASES, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), database=None)
    @given(requests(spec))
    def one(case: tuple[str, str, dict[str, Any], Any]) -> None:
        nonlocal cases
        method, path, params, body = case
        response = loop.run_until_complete(
            client.request(method, path, **send_kwargs(params, body)))
        check(response, (method, path))
        cases += 1

    one()
    loop.run_until_complete(client.aclose())
    assert cases >= 2000, cases


def _unix_peer(app: Any) -> Any:
    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await app({**scope, "server": ("/tmp/fuzz.sock", None)}, receive, send)

    return wrapped


def test_openapi_fuzz_real_daemon(real_daemon: RunningDaemon) -> None:
    with real_daemon.http(60) as http:
        spec = http.get("/openapi.json").json()
        cases = 0

        @settings(max_examples=REAL_DAEMON_CASES, deadline=None,
                  suppress_health_check=list(HealthCheck), database=None)
        @given(requests(spec))
        def one(case: tuple[str, str, dict[str, Any], Any]) -> None:
            nonlocal cases
            method, path, params, body = case
            if path.startswith(("/api/turns", "/v1/chat")) and isinstance(body, dict):
                body = {**body, "max_tokens": 1}  # keep real generations short
            check(http.request(method, path, **send_kwargs(params, body)), (method, path))
            cases += 1

        one()
        assert cases >= REAL_DAEMON_CASES // 2
        assert http.get("/health").status_code == 200
    assert real_daemon.proc.poll() is None
