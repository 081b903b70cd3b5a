"""A plugin installed as pip leaves one, without pip: its module and a ``dist-info`` with the
``assistant`` entry point, in a directory the daemon gets on its ``PYTHONPATH``."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path


def install_plugin(site: Path, module: str, source: str, entry_point: str, *,
                   distribution: str | None = None, version: str = "0.1") -> Path:
    """Write ``site/MODULE.py`` (``source``, dedented) and the dist-info of ``distribution``
    (MODULE with dashes by default) naming it as entry point ``entry_point``; the module's
    path, for a test that edits it."""
    distribution = distribution or module.replace("_", "-")
    info = site / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[assistant]\n{entry_point} = {module}\n")
    path = site / f"{module}.py"
    path.write_text(textwrap.dedent(source))
    return path


def python_path(site: Path) -> str:
    """A ``PYTHONPATH`` for the daemon: ``site`` first, then this interpreter's own path."""
    return os.pathsep.join([str(site), *sys.path])
