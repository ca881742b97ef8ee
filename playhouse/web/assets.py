"""Where the templates and static files live.

An installed wheel carries the repository's ``web/`` folder as ``playhouse/_web``; in a
checkout it is ``web/`` next to the package.
"""

from __future__ import annotations

from pathlib import Path

from playhouse.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parent.parent


def web_dir() -> Path:
    """The folder holding ``templates/`` and ``static/``."""
    for candidate in (_PACKAGE / "_web", _PACKAGE.parent / "web"):
        if (candidate / "templates").is_dir():
            return candidate
    raise ConfigError(
        f"web assets not found under {_PACKAGE / '_web'} or {_PACKAGE.parent / 'web'}"
    )


def templates_dir() -> Path:
    return web_dir() / "templates"


def static_dir() -> Path:
    return web_dir() / "static"
