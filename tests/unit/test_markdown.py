"""Safe Markdown: what renders, what stays text, and the bounds that keep a page alive."""

from __future__ import annotations

import re
import time

import pytest

from playhouse.markdown import MAX_DEPTH, reddit_unescape, render, render_title


def depth(html: str) -> int:
    """Deepest element nesting in ``html`` (void elements do not nest)."""
    level = deepest = 0
    for closing, tag in re.findall(r"<(/?)([a-z0-9]+)[^>]*>", html):
        if tag in {"br", "hr"}:
            continue
        level += -1 if closing else 1
        deepest = max(deepest, level)
    return deepest


def test_the_commonmark_subset_renders() -> None:
    out = render("**bold** *it* `code` ~~gone~~\n\n> quoted\n\n- one\n- two\n\n```\nblock\n```")
    for part in ("<strong>bold</strong>", "<em>it</em>", "<code>code</code>", "<s>gone</s>",
                 "<blockquote>", "<li>one</li>", "<pre><code>block"):
        assert part in out, part


def test_links_are_nofollow_and_only_http_https_mailto() -> None:
    out = render("[a](https://example.com/x) [b](http://e.org) <mailto:me@example.com>")
    assert out.count('rel="nofollow ugc noopener"') == 3
    for bad in ("[x](javascript:alert(1))", "[x](JAVASCRIPT:alert(1))", "[x](data:text/html,hi)",
                "[x](vbscript:x)", "[x](file:///etc/passwd)", "<javascript:alert(1)>",
                "[x](//evil.example/x)", "[x](/relative)"):
        assert "<a " not in render(bad), bad


def test_raw_html_and_images_never_render() -> None:
    for payload in ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>",
                    "`<img src=x onerror=alert(1)>`", "[<img src=x onerror=alert(1)>](http://a.b)",
                    '<a href="javascript:alert(1)">x</a>'):
        out = render(payload)
        assert "<img" not in out and "<script" not in out and "<a href=\"javascript" not in out
    picture = render("![cat](http://other.example/cat.png)")
    assert "<img" not in picture and 'href="http://other.example/cat.png"' in picture


def test_autolinks_with_quotes_stay_inside_the_attribute() -> None:
    out = render('<http://a.example/"onmouseover="alert(1)>')
    assert 'onmouseover="' not in out and "%22onmouseover" in out


def test_mentions_link_to_profiles_and_rooms_but_not_in_code_or_links() -> None:
    out = render("thanks u/CoopBot and /u/alice_, see r/Sports; `u/code` [u/x](https://e.x)")
    assert '<a href="/u/CoopBot" class="mention">u/CoopBot</a>' in out
    assert 'href="/u/alice_"' in out and '<a href="/r/Sports" class="mention">' in out
    assert "/u/code" not in out and 'href="/u/x"' not in out
    assert "href=" not in render("email@u/x.com is not a mention? r/ab is too short")
    assert 'href="/r/Tech"' in render("r/Tech-stuff")


def test_reddit_escapes_render_as_reddit_does() -> None:
    out = render("&gt; a quote &amp; more\n\nsecond paragraph\nsoft break")
    assert "<blockquote>" in out and "&amp; more" in out
    assert out.count("<p>") == 2 and "second paragraph\nsoft break" in out
    assert reddit_unescape("&amp;gt;") == "&gt;"  # undone once, as Reddit escaped once
    assert "<script" not in render("&lt;script&gt;alert(1)&lt;/script&gt;")


def test_titles_are_inline_only() -> None:
    title = render_title("# not a heading **but bold** [l](https://e.x) u/CoopBot")
    assert "<h1>" not in title and "<p>" not in title and "<strong>but bold</strong>" in title
    bare = render_title("**bold** [l](https://e.x) u/CoopBot", links=False)
    assert "<a" not in bare and "<strong>bold</strong>" in bare and "u/CoopBot" in bare


@pytest.mark.parametrize("text", [
    "> " * 1000 + "deep",
    "- " * 1000 + "deep",
    "".join("  " * i + "- level\n" for i in range(120)),
    "**a " * 3000 + "end",
    "*" * 10_000,
    "[" * 10_000 + "x" + "]" * 10_000,
    "_" * 5000 + "x" + "_" * 5000,
])
def test_pathological_texts_are_bounded_fast_and_keep_their_words(text: str) -> None:
    start = time.perf_counter()
    out = render(text)
    elapsed = time.perf_counter() - start
    assert depth(out) <= MAX_DEPTH + 2
    assert elapsed < 5.0  # a render never stalls (a generous bound on a shared machine)
    for word in ("deep", "end", "level"):
        if word in text:
            assert word in out, word


def test_an_empty_text_renders_nothing() -> None:
    assert render("") == "" and render("   \n ") == "" and render_title("  ") == ""
