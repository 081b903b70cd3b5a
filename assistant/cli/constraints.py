"""The daemon's own dependencies, pinned: what ``assistant plugins install`` hands pip as
constraints (``-c``), so that a plugin cannot move them.

Every distribution the daemon's distribution requires, directly or through another, that is
installed, at its installed version (the daemon's own included). A plugin that needs another
version of one fails in pip's resolver, with pip's message, and the environment stays as it
was. Run as ``python -m assistant.cli.constraints`` with the daemon's interpreter, it prints
them, one a line, for that environment.
"""

from __future__ import annotations

from importlib import metadata

from assistant.cli.scaffold import DISTRIBUTION


def pins(root: str = DISTRIBUTION) -> list[str]:
    """``name==version`` of ``root`` and of each installed distribution it requires,
    transitively (the extras a requirement names included), sorted by name."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, str] = {}
    extras_seen: dict[str, set[str]] = {}
    todo: list[tuple[str, set[str]]] = [(root, set())]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in found and extras <= extras_seen[key]:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed: nothing to keep
        found[key] = dist.version
        extras_seen[key] = extras_seen.get(key, set()) | extras
        for line in dist.requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
                todo.append((requirement.name, set(requirement.extras)))
    return [f"{name}=={version}" for name, version in sorted(found.items())]


if __name__ == "__main__":
    print("\n".join(pins()))
