"""Jinja2 set-up (autoescaping always on) and the one helper every page uses."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, FileSystemLoader
from litestar import Request
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from playhouse.markdown import render, render_title
from playhouse.views import decode_notice, iso
from playhouse.web.assets import templates_dir
from playhouse.web.context import context_of, current_user


def _ago(ts: float) -> str:
    """A coarse relative time ("3 min ago"); the exact time goes in a title attribute."""
    seconds = max(0.0, dt.datetime.now(dt.UTC).timestamp() - ts)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    env = Environment(
        loader=FileSystemLoader(templates_dir()), autoescape=True,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["ago"] = _ago
    env.filters["utc"] = _utc
    env.filters["iso"] = iso
    env.filters["notice"] = decode_notice
    env.filters["md"] = render
    env.filters["md_title"] = render_title
    env.filters["md_title_plain"] = lambda text: render_title(text, links=False)
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(env))


def page(
    request: Request[Any, Any, Any], name: str, *, status_code: int = 200, **context: Any
) -> Template:
    """Render ``name`` with the user, the personas' looks and ``context``."""
    ctx = context_of(request)
    looks = {
        p.name: {"colour": p.look.colour, "avatar": p.look.avatar}
        for p in ctx.cast.personas.values()
    }
    base = {"user": current_user(request), "looks": looks, "instance": ctx.instance,
            "unread": request.state.get("unread")}
    return Template(template_name=name, context={**base, **context}, status_code=status_code)
