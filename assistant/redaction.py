"""Scrub what an error message must not carry off the machine's user: paths, the user name, secrets.

Error text often embeds an absolute path (``the file of model 'x' is gone: /home/ann/...``);
the daemon sends such text to clients, which may be a browser page or a log shipped elsewhere.
An absolute path becomes ``…/<last part>``, the login name and home directory ``~``/``<user>``,
and any secret given is replaced by ``<redacted>``.
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable
from functools import lru_cache

# A slash that starts a path (not one inside a word, a URL or a relative path), then at least
# one more part: "/tmp/x.gguf" and "/a/b/c" are paths, "/api" or "and/or" are not.
_ABSOLUTE = re.compile(r"(?<![\w.:/~-])/(?:[^\s/'\"`:;,()<>\[\]{}]+/)+([^\s/'\"`:;,()<>\[\]{}]*)")


@lru_cache(maxsize=1)
def _user() -> tuple[str, str]:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = ""
    return name, os.path.expanduser("~")


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    name, home = _user()
    if home and home != "/":
        text = text.replace(home, "~")
    text = _ABSOLUTE.sub(lambda m: "…/" + m.group(1), text)
    if len(name) >= 3:
        text = re.sub(rf"\b{re.escape(name)}\b", "<user>", text)
    return text
