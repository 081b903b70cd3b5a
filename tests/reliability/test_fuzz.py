"""Schema fuzz: requests generated from the daemon's own OpenAPI description; never a 5xx.

Each case picks an operation of ``app.openapi()``, fills its path and query parameters and its
JSON body from the schema (``schema_strategy``, a small JSON-Schema-to-hypothesis mapping; the
hypothesis-jsonschema package does not work with current hypothesis), and sometimes breaks the
body (junk bytes, arbitrary JSON, wrong types). 2,500 cases run in-process through
``httpx.ASGITransport`` on the real app, store and plugins with the fake model; 200 more go to
the real daemon over its socket. ``/api/turns`` and ``/api/import`` get 2,000 cases each of
their own: turns from the schema; imports (whose body is a file, with no schema) as our export
and ChatGPT's ``conversations.json`` with leaves replaced by hostile values (huge numbers,
NaN, far-off times, lone surrogates, wrong types), keys dropped and nesting deepened.

How we checked it finds what it should: before the ``HTTPException`` handler in ``build_app``
the in-process run failed within seconds: a raw-bytes body gave FastAPI's own
``{"detail": "There was an error parsing the body"}`` instead of our error shape. Re-checked
by removing the ``RequestValidationError`` handler: the in-process run failed in 7 s on
``POST /v1/embeddings`` with no body (422 ``{"detail": [...]}``, not our shape).
"""

from __future__ import annotations

import asyncio
import copy
import json
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.testing import RunningDaemon, in_process_daemon

IN_PROCESS_CASES = 2500
ROUTE_CASES = 2000  # each, for the two routes that take a user's files and text (issue 21)
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
def requests(draw: st.DrawFn, spec: dict[str, Any], only: tuple[str, str] | None = None,
             ) -> tuple[str, str, dict[str, Any], Any]:
    """A request to one operation of ``spec`` (``only``: that method and path)."""
    method, path, op = draw(st.sampled_from(
        [o for o in operations(spec) if only is None or o[:2] == only]))
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


# Hostile values for a leaf of an import: those issue 21 found giving 500s, and their kind.
nasty = st.one_of(
    st.sampled_from([None, "", "\ud800", "\udfff x", 10**30, -(10**30), 1e20, -1, 0, 1e308,
                     "NaN", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00",
                     "2024-02-30T00:00:00Z", [], {}, [{}], [None], "x" * 5000, True,
                     float("nan"), float("inf")]),
    json_values,
)


def _nodes(obj: Any, where: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value inside ``obj`` (keys and indexes), parents before children."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) \
        else ()
    for key, value in items:
        yield (*where, key)
        yield from _nodes(value, (*where, key))


@st.composite
def hostile(draw: st.DrawFn, template: Any) -> Any:
    """``template`` with up to three of its values replaced by a :data:`nasty` one, removed,
    or wrapped in a list (none, a quarter of the time: a valid file)."""
    doc = copy.deepcopy(template)
    for _ in range(draw(st.integers(0, 3))):
        nodes = list(_nodes(doc))
        if not nodes:
            break
        path = draw(st.sampled_from(nodes))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "remove", "wrap"]))
        if action == "replace":
            # A copy: a later change inside it must not change the strategy's own constants
            # (hypothesis found the generation inconsistent when it did).
            parent[path[-1]] = copy.deepcopy(draw(nasty))
        elif action == "remove":
            del parent[path[-1]]
        else:
            parent[path[-1]] = [parent[path[-1]]]
    return doc


_OURS: dict[str, Any] = {
    "format": "assistant-conversations", "version": 1, "exported": "2026-12-01T10:00:00Z",
    "conversations": [{
        "id": "c1", "title": "A title", "created": "2026-12-01T10:00:00Z",
        "updated": "2026-12-01T10:01:00Z", "archived": False, "pinned": False,
        "model": "fake", "settings": {}, "active_leaf_id": "m2",
        "messages": [
            {"id": "m1", "parent_id": None, "role": "user", "content": "hello",
             "status": "complete", "created": "2026-12-01T10:00:00Z"},
            {"id": "m2", "parent_id": "m1", "role": "assistant", "content": "hi there",
             "status": "complete", "skill": "chat", "route": {"skill": "chat"},
             "model": "fake", "prompt_tokens": 3, "completion_tokens": 2,
             "timings": {"total_s": 0.1}, "confidence": 0.8, "citations": [],
             "created": "2026-12-01T10:00:30Z"},
        ],
    }],
}
_CHATGPT: list[dict[str, Any]] = [{
    "title": "A title", "create_time": 1764583200.0, "update_time": 1764583260.5,
    "conversation_id": "g1", "id": "g1", "is_archived": False, "current_node": "b",
    "mapping": {
        "root": {"id": "root", "message": None, "parent": None, "children": ["a"]},
        "a": {"id": "a", "parent": "root", "children": ["b"], "message": {
            "id": "a", "author": {"role": "user"}, "create_time": 1764583200.0,
            "content": {"content_type": "text", "parts": ["hello"]},
            "status": "finished_successfully", "metadata": {}}},
        "b": {"id": "b", "parent": "a", "children": [], "message": {
            "id": "b", "author": {"role": "assistant"}, "create_time": 1764583230.0,
            "content": {"content_type": "text", "parts": ["hi there"]},
            "status": "finished_successfully", "metadata": {"model_slug": "gpt-4o"}}},
    },
}]


@st.composite
def imports(draw: st.DrawFn) -> tuple[dict[str, str], bytes]:
    """An import request: its query and its body, the file."""
    fmt = draw(st.sampled_from(["auto", "json", "chatgpt"]))
    kind = draw(st.sampled_from(["ours", "ours", "chatgpt", "chatgpt", "raw", "deep"]))
    if kind == "raw":
        body = draw(st.binary(max_size=300))
    elif kind == "deep":
        depth = draw(st.integers(1, 100_000))
        body = (draw(st.sampled_from(["[", '{"a":', '{"conversations":['])) * depth).encode()
    else:
        # A new id each time, so that a file is stored rather than skipped as imported before.
        fresh = f"{kind}-{draw(st.integers(0, 10**9))}"
        template: Any = copy.deepcopy(_OURS if kind == "ours" else _CHATGPT)
        if kind == "ours":
            template["conversations"][0]["id"] = fresh
        else:
            template[0]["conversation_id"] = template[0]["id"] = fresh
        doc = draw(hostile(template))
        body = json.dumps(doc).encode()  # NaN and lone surrogates written as JSON allows
    return {"format": fmt}, body


@pytest.mark.parametrize("route", ["/api/turns", "/api/import"])
def test_the_routes_taking_user_files_and_text_fuzzed_2000_times_each(
    fake_app: tuple[Any, Any, asyncio.AbstractEventLoop], route: str,
) -> None:
    app, fastapi_app, loop = fake_app
    spec = fastapi_app.openapi()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=_unix_peer(app)),
                               base_url="http://assistant", timeout=30)
    statuses: Counter[int] = Counter()
    strategy = (requests(spec, ("POST", route)) if route == "/api/turns"
                else imports().map(lambda q: ("POST", route, q[0], ("raw", q[1]))))

    @settings(max_examples=ROUTE_CASES, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck), database=None)
    @given(strategy)
    def one(case: tuple[str, str, dict[str, Any], Any]) -> None:
        method, path, params, body = case
        response = loop.run_until_complete(
            client.request(method, path, **send_kwargs(params, body)))
        check(response, (method, path))
        statuses[response.status_code] += 1

    one()
    loop.run_until_complete(client.aclose())
    print(f"{route}: {sum(statuses.values())} cases, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= ROUTE_CASES
    # Not only refusals: valid requests got through. The cases are random; /api/turns saw 91 and
    # 105 of 2,000 succeed in two runs, so the floor is half that (about five deviations below).
    assert statuses[200] >= ROUTE_CASES // 40


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
