"""Chat-template injection from GGUF metadata (CVE-2024-34359), against the real daemon.

Each hostile template is written into a copy of the real smollm2 file (so llama.cpp loads it),
registered with ``assistant models add`` and used for a chat through the daemon's OpenAI API.

How we checked these fail without their protection (each run with it taken out, then the
file restored and ``git diff`` checked):
- the sandbox: ``jinja2.Environment`` instead of ``ImmutableSandboxedEnvironment`` → the
  escapes test fails ("cycler" is no longer refused as unsafe);
- ``SafeUndefined`` replaced by jinja2's ``Undefined`` → ``('{0.__class__}'|attr('format'))``
  renders '' and llama.cpp fails on it: 503 with an unclear message, not a clear 400;
- the 400 for a refused template (``ChatTemplateError`` in ``error_response``) removed → 503;
- the 64 KB check in ``ChatTemplate`` removed → the 70 KB template loads and answers 200;
- ``_deadline`` replaced by a no-op → the looping render never returns: "never stopped".
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import httpx
import pytest

from assistant.models.template import MAX_TEMPLATE_BYTES, RENDER_TIMEOUT_S
from assistant.testing import RunningDaemon
from tests.reliability.ggufs import models_add, with_template

# {S} is the sentinel path: any of these that ran code would create it.
ESCAPES = {
    "lipsum": "{{ lipsum.__globals__['os'].popen('touch {S}').read() }}",
    "cycler": "{{ cycler.__init__.__globals__.os.popen('touch {S}').read() }}",
    "mro": "{% for c in ''.__class__.__mro__[1].__subclasses__() %}"
           "{% if c.__name__ == 'Popen' %}{{ c(['touch', '{S}']) }}{% endif %}{% endfor %}",
    "attr_format": "{{ ('{0.__class__}'|attr('format'))(messages) }}",
    "attr_format_deep": "{{ '{0.__init__.__globals__[os].system}'|attr('format')('x') }}",
}
LOOP = ("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
        "{% endfor %}{% endfor %}{% endfor %}")


def chat(daemon: RunningDaemon, model: str, timeout: float = 60) -> tuple[int, str]:
    with daemon.http(timeout) as http:
        response = http.post("/v1/chat/completions", json={
            "model": model, "max_tokens": 4,
            "messages": [{"role": "user", "content": "hello"}]})
    message = response.json()["error"]["message"] if response.status_code >= 400 else ""
    return response.status_code, message


def assert_healthy(daemon: RunningDaemon) -> None:
    with daemon.http(10) as http:
        started = time.monotonic()
        assert http.get("/health").status_code == 200
        assert time.monotonic() - started < 2


def test_template_escapes_run_no_code_and_fail_clearly(
    real_daemon: RunningDaemon, real_env: dict[str, str], tmp_path: Path
) -> None:
    for name, template in ESCAPES.items():
        sentinel = tmp_path / f"pwned-{name}"
        path = with_template(tmp_path / f"{name}.gguf", template.replace("{S}", str(sentinel)))
        assert models_add(real_env, path, name).returncode == 0
        status, message = chat(real_daemon, name)
        path.unlink()
        assert not sentinel.exists(), f"{name}: the template ran code"
        assert status == 400, f"{name}: the hostile template answered {status}"
        assert "template" in message and ("unsafe" in message or "undefined" in message), message
        assert_healthy(real_daemon)


def test_template_over_64kb_is_refused(
    real_daemon: RunningDaemon, real_env: dict[str, str], tmp_path: Path
) -> None:
    big = "{# " + "x" * (MAX_TEMPLATE_BYTES + 4096) + " #}{{ messages[0]['content'] }}"
    path = with_template(tmp_path / "big.gguf", big)
    added = models_add(real_env, path, "big")
    if added.returncode == 0:  # the registry may take it; loading it must not
        status, message = chat(real_daemon, "big")
        assert status == 400 and "64 KB" in message, (status, message)
    else:
        assert "64" in added.stderr, added.stderr
    assert_healthy(real_daemon)


@pytest.mark.timeout(180)
def test_looping_template_is_stopped_and_daemon_stays_responsive(
    real_daemon: RunningDaemon, real_env: dict[str, str], tmp_path: Path
) -> None:
    path = with_template(tmp_path / "loop.gguf", LOOP)
    assert models_add(real_env, path, "loop").returncode == 0
    import threading

    result: dict[str, tuple[int, str]] = {}

    def ask() -> None:
        with contextlib.suppress(httpx.TimeoutException):  # no answer in 90 s: asserted below
            result["r"] = chat(real_daemon, "loop", 90)

    worker = threading.Thread(target=ask)
    started = time.monotonic()
    worker.start()
    health_s = []
    while worker.is_alive() and time.monotonic() - started < 90:
        t0 = time.monotonic()
        with real_daemon.http(10) as http:
            assert http.get("/health").status_code == 200
        health_s.append(time.monotonic() - t0)
        time.sleep(0.2)
    worker.join(1)
    assert not worker.is_alive() and "r" in result, "the looping template was never stopped"
    status, message = result["r"]
    assert status == 400 and "did not finish rendering" in message, (status, message)
    assert time.monotonic() - started < RENDER_TIMEOUT_S + 30
    assert max(health_s) < 1.0, health_s
    # The host is still usable: the real model answers afterwards.
    assert chat(real_daemon, "smollm2-135m")[0] == 200
