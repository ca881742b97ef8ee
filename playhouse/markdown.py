"""Safe Markdown: the one place where a post's text becomes HTML.

Every page and every live event carries HTML made here (the browser never turns text
into HTML itself); what is stored, and what the bots' prompts are built from, stays the
raw text. The renderer is markdown-it-py's CommonMark parser with:

* raw HTML off (``<script>`` shows as text) and images off (``![x](url)`` stays a link:
  no picture is ever fetched from another site);
* links only to ``http``, ``https`` and ``mailto`` (``javascript:``, ``data:``,
  relative and every other scheme stay text), each ``rel="nofollow ugc noopener"``;
* ``u/name`` and ``r/room`` in text become links to the profile and the room;
* Reddit's own escaping undone first: its text arrives with ``&gt;``, ``&lt;`` and
  ``&amp;`` (the models were trained on it), so ``&gt; quote`` is a quote, as on Reddit;
  a blank line starts a paragraph and a single newline is a soft break, as on Reddit;
* ``~~strike~~``, which Reddit has and CommonMark does not.

Bounds: a text deeper than :data:`MAX_DEPTH` (1,000 nested quotes, 10,000 ``*``), longer
than :data:`MAX_SOURCE_CHARS`, or rendering to more than :data:`MAX_HTML_CHARS`, is shown
as escaped plain text instead: nothing is lost, nothing stalls a page. Titles are
rendered inline only (emphasis, code, links); in a listing, where the title is itself a
link, without links. Renders are cached by text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markupsafe import Markup

MAX_DEPTH = 16
"""Deepest nesting of HTML elements a rendered text may have (quotes, lists, emphasis)."""
MAX_SOURCE_CHARS = 40_000
MAX_HTML_CHARS = 200_000
LINK_REL = "nofollow ugc noopener"
SCHEMES = ("http:", "https:", "mailto:")
_PARSER_NESTING = MAX_DEPTH + 8
"""markdown-it stops parsing blocks past this depth (dropping the rest): deeper than
MAX_DEPTH, so a text that reaches it is always shown as plain text instead."""

_REDDIT_ENTITY = re.compile(r"&(amp|lt|gt);")
_REDDIT_CHARS = {"amp": "&", "lt": "<", "gt": ">"}
_MENTION = re.compile(r"(?<![\w/])/?([ur])/([A-Za-z0-9_-]+)")
_USER_NAME = re.compile(r"^[A-Za-z0-9_-]{2,32}$")
_ROOM_NAME = re.compile(r"^[A-Za-z0-9_]+")
_NO_LINKS = "no_links"


def _valid_link(url: str) -> bool:
    return url.strip().lower().startswith(SCHEMES)


def _mention(kind: str, raw: str) -> tuple[str, str] | None:
    """(shown text, href) for ``u/raw`` or ``r/raw``, or None when it names nothing."""
    if kind == "u":
        name = raw if _USER_NAME.match(raw) else raw.rstrip("-_")
        if not _USER_NAME.match(name):
            return None
        return f"u/{name}", f"/u/{name}"
    match = _ROOM_NAME.match(raw)
    name = match.group(0) if match else ""
    if not 3 <= len(name) <= 32:
        return None
    return f"r/{name}", f"/r/{name}"


def _split_mentions(token: Token) -> list[Token]:
    """A text token as text and mention-link tokens (itself when it mentions nobody)."""
    text = token.content
    out: list[Token] = []
    last = 0
    for match in _MENTION.finditer(text):
        found = _mention(match.group(1), match.group(2))
        if found is None:
            continue
        shown, href = found
        start = match.start()
        end = start + len(shown) + (1 if text[start] == "/" else 0)
        if start > last:
            out.append(Token("text", "", 0, content=text[last:start], level=token.level))
        link = Token("link_open", "a", 1, level=token.level)
        link.attrSet("href", href)
        link.attrSet("class", "mention")
        link.meta["mention"] = True
        out.append(link)
        out.append(Token("text", "", 0, content=text[start:end], level=token.level + 1))
        out.append(Token("link_close", "a", -1, level=token.level))
        last = end
    if not out:
        return [token]
    if last < len(text):
        out.append(Token("text", "", 0, content=text[last:], level=token.level))
    return out


def _link_mentions(state: StateCore) -> None:
    if state.env.get(_NO_LINKS):
        return
    for block in state.tokens:
        if block.type != "inline" or not block.children:
            continue
        children: list[Token] = []
        inside_link = 0
        for child in block.children:
            if child.type == "link_open":
                inside_link += 1
            elif child.type == "link_close":
                inside_link -= 1
            if child.type == "text" and not inside_link and "/" in child.content:
                children.extend(_split_mentions(child))
            else:
                children.append(child)
        block.children = children


def _render_link_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    if env.get(_NO_LINKS):
        return ""
    token = tokens[idx]
    if not token.meta.get("mention"):
        token.attrSet("rel", LINK_REL)
    return renderer.renderToken(tokens, idx, options, env)


def _render_link_close(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: Any, env: Any
) -> str:
    if env.get(_NO_LINKS):
        return ""
    return renderer.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "maxNesting": _PARSER_NESTING})
    md.enable("strikethrough")
    md.disable("image")
    md.validateLink = _valid_link  # type: ignore[method-assign]
    md.core.ruler.push("mentions", _link_mentions)
    md.add_render_rule("link_open", _render_link_open)
    md.add_render_rule("link_close", _render_link_close)
    return md


_md = _parser()


def reddit_unescape(text: str) -> str:
    """Undo Reddit's escaping of ``&``, ``<`` and ``>`` (once: ``&amp;gt;`` is ``&gt;``)."""
    return _REDDIT_ENTITY.sub(lambda m: _REDDIT_CHARS[m.group(1)], text)


def _depth(tokens: Sequence[Token], start: int = 0) -> int:
    deepest = level = start
    for token in tokens:
        if token.nesting == 1:
            level += 1
            deepest = max(deepest, level)
        elif token.nesting == -1:
            level -= 1
        if token.children:
            deepest = max(deepest, _depth(token.children, level))
    return deepest


def plain(text: str) -> Markup:
    """``text`` escaped as paragraphs (blank lines) and line breaks: the fallback."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if not paragraphs:
        return Markup("")
    body = "".join(
        f'<p class="plain">{html.escape(p).replace(chr(10), "<br>" + chr(10))}</p>\n'
        for p in paragraphs
    )
    return Markup(body)


def _bounded(tokens: list[Token], env: dict[str, Any], source: str) -> Markup | None:
    if _depth(tokens) > MAX_DEPTH:
        return None
    out = _md.renderer.render(tokens, _md.options, env)
    if len(out) > MAX_HTML_CHARS:
        return None
    return Markup(out)


CACHED_CHARS = 2000
"""Texts up to this long are cached (most comments); longer ones are rendered each time,
so the cache stays small whatever people post."""


def render(text: str) -> Markup:
    """A post's or comment's text as safe HTML (block Markdown)."""
    return _render_cached(text) if len(text) <= CACHED_CHARS else _render(text)


@lru_cache(maxsize=4096)
def _render_cached(text: str) -> Markup:
    return _render(text)


def _render(text: str) -> Markup:
    if not text.strip():
        return Markup("")
    source = reddit_unescape(text)
    if len(source) > MAX_SOURCE_CHARS:
        return plain(source)
    env: dict[str, Any] = {}
    rendered = _bounded(_md.parse(source, env), env, source)
    return rendered if rendered is not None else plain(source)


@lru_cache(maxsize=4096)
def render_title(text: str, *, links: bool = True) -> Markup:
    """A title as safe inline HTML; ``links=False`` where the title is itself a link."""
    source = reddit_unescape(" ".join(text.split()))
    if not source:
        return Markup("")
    if len(source) > MAX_SOURCE_CHARS:
        return Markup(html.escape(source))
    env: dict[str, Any] = {} if links else {_NO_LINKS: True}
    rendered = _bounded(_md.parseInline(source, env), env, source)
    if rendered is None:
        return Markup(html.escape(source))
    return rendered


__all__ = ["MAX_DEPTH", "plain", "reddit_unescape", "render", "render_title"]
