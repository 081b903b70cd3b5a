"""The bundled plugins: chat, translate, summarize, qa, and guard (secrets, topics).

Each module is a plugin registered through the ``assistant`` entry-point group, exactly as a
third-party plugin would be (see pyproject.toml). The package name cannot clash with
``assistant`` itself in site-packages.
"""
