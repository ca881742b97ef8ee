"""The thread grammars shared by training and inference, one value per variant.

A thread is written as one line of text in the tags of :mod:`playhouse.grammar.tags`. Three
variants are registered (a persona's ``grammar`` field names one; :func:`get` returns it):

``playhouse`` (the default: the project's own models, the demo models; T title, B body)::

    <|soss r/ROOM|><|sot|>T<|eot|><|sost|>B<|eost|><|sor u/a|>C1<|eor|><|soopr u/b|>C2<|eoopr|>

  Every tag named, everything closed, a link post's URL between ``<|sol|>`` and ``<|eol|>``.
  A reply prompt ends with the bot's named open tag (``<|sor u/BOT|>``) and the model writes
  ``TEXT<|eor|>``; a new post is ``TITLE<|eot|><|sost|>BODY<|eost|>``. Free text is escaped
  with :data:`~playhouse.grammar.codecs.PLAYHOUSE_CODEC`. Its tags are registered as tokens.

``ssi-bot`` (models fine-tuned on zacc/ssi-bot's training lines, the format since Feb 2022)::

    <|soss r/ROOM|><|sot|>T<|sost|>B<|sor u/a|>C1<|soopr u/b|>C2<|sor|>C3<|eoss|><|endoftext|>

  No title, body or comment end tags, no URL for a link post (``<|sols r/ROOM|><|sot|>TITLE
  <|sol|>`` … ``<|eols|>``), and only the last comment's tag without its name. Bodies and
  comments are Python ``repr`` escapes (:data:`~playhouse.grammar.codecs.PYTHON_REPR`),
  titles are raw (:data:`~playhouse.grammar.codecs.RAW`). As ssi-bot serves them, prompts
  are closed with end tags and the bot's own tag has no name (``<|sor|>``, ``<|soopr|>``,
  ``<|soocr|>``; a top-level reply is always ``<|sor|>``); a reply ends at its first ``<|``
  of any kind, a post's title at the first ``<|`` after ``<|sot|>`` and its body at the first
  ``<|`` after ``<|sost|>``. Sampling: repetition penalty 1.008 and generation up to GPT-2's
  1024 tokens in all. Tags are text to these models (no added tokens).

``ssi-bot-2021`` (ssi-bot models from before Feb 2022, or run with ``use_reply_sense=False``)::

    <|soss|><|sot|>T<|eot|><|sost|>B<|eost|><|sor|>C1<|eor|><|sor|>C2<|eor|><|eoss|><|endoftext|>

  No `` r/ROOM`` or `` u/NAME`` and only ``sor`` comments, closed with ``<|eor|>``; otherwise
  as ``ssi-bot``.

In every variant people's text is escaped so that it cannot forge a tag, and generated text
holding any piece of a tag is refused. The module-level functions and constants are the
``playhouse`` variant's, for the code that only ever writes the project's own format.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

from playhouse.errors import ConfigError, InvalidInput
from playhouse.grammar import codecs
from playhouse.grammar.tags import (
    ALL_TAGS,
    LINK_END,
    LINK_START,
    POST_END_TAGS,
    REPLY_END_TAGS,
    TEXT_END,
    TEXT_START,
    TITLE_END,
    TITLE_START,
)
from playhouse.grammar.values import (
    GPT2_CONTEXT,
    ChainEntry,
    FittedPrompt,
    ParsedPost,
    ParsedThread,
    Post,
    clean_text,
)
from playhouse.grammar.variant import Grammar, Layout

__all__ = [
    "ALL_TAGS",
    "DEFAULT_GRAMMAR",
    "GPT2_CONTEXT",
    "GRAMMARS",
    "GRAMMAR_VERSION",
    "LINK_END",
    "LINK_START",
    "PLAYHOUSE",
    "POST_END_TAGS",
    "REPLY_END_TAGS",
    "SSI_BOT",
    "SSI_BOT_2021",
    "STOP_STRINGS",
    "TEXT_END",
    "TEXT_START",
    "TITLE_END",
    "TITLE_START",
    "ChainEntry",
    "FittedPrompt",
    "Grammar",
    "Layout",
    "ParsedPost",
    "ParsedThread",
    "Post",
    "clean_text",
    "comment_block",
    "detect",
    "escape",
    "get",
    "open_tag",
    "parse_post",
    "parse_reply",
    "parse_training_line",
    "post_header",
    "post_prompt",
    "reply_prompt",
    "training_line",
    "unescape",
]

PLAYHOUSE: Final = Grammar(
    name="playhouse",
    summary="playhouse's own models (and its demo models): every tag named and closed",
    layout=Layout(
        reply_sense=True, closed_lines=True, name_last=True, name_bot=True,
        op_top_level=True, writes_url=True, thread_end=False, strict=True,
    ),
    text=codecs.PLAYHOUSE_CODEC,
    title=codecs.PLAYHOUSE_CODEC,
    token_strings=ALL_TAGS,
)

_SSI_SAMPLING: Final = (
    ("temperature", 0.8),
    ("top_k", 40),
    ("top_p", 0.95),
    ("repetition_penalty", 1.008),
    ("max_prompt_tokens", 400),
)
"""ssi-bot's generation settings (max_prompt_tokens: its prompts are cut to 1450 characters)."""

SSI_BOT: Final = Grammar(
    name="ssi-bot",
    summary="models fine-tuned on zacc/ssi-bot's training lines (Feb 2022 on)",
    layout=Layout(
        reply_sense=True, closed_lines=False, name_last=False, name_bot=False,
        op_top_level=False, writes_url=False, thread_end=True, strict=False,
    ),
    text=codecs.PYTHON_REPR,
    title=codecs.RAW,
    sampling=_SSI_SAMPLING,
    run_to_context=True,
)

SSI_BOT_2021: Final = Grammar(
    name="ssi-bot-2021",
    summary="older ssi-bot models (before Feb 2022, or use_reply_sense = False)",
    layout=Layout(
        reply_sense=False, closed_lines=True, name_last=False, name_bot=False,
        op_top_level=False, writes_url=False, thread_end=True, strict=False,
    ),
    text=codecs.PYTHON_REPR,
    title=codecs.RAW,
    sampling=_SSI_SAMPLING,
    run_to_context=True,
)

GRAMMARS: Final[Mapping[str, Grammar]] = MappingProxyType(
    {grammar.name: grammar for grammar in (PLAYHOUSE, SSI_BOT, SSI_BOT_2021)}
)
"""Every variant by name, the default first."""

DEFAULT_GRAMMAR: Final = PLAYHOUSE.name


def get(name: str) -> Grammar:
    """The variant called ``name``; :class:`ConfigError` naming the known ones otherwise."""
    grammar = GRAMMARS.get(name)
    if grammar is None:
        known = ", ".join(repr(known) for known in GRAMMARS)
        raise ConfigError(f"unknown grammar {name!r} (known: {known})")
    return grammar


def detect(lines: Iterable[str]) -> Grammar | None:
    """The first variant (in :data:`GRAMMARS` order) that reads every non-blank line of
    ``lines`` as a training line, or ``None``. The variants' lines never read as another's."""
    sample = [line for line in lines if line.strip()]
    if not sample:
        return None
    for grammar in GRAMMARS.values():
        try:
            for line in sample:
                grammar.parse_training_line(line)
        except InvalidInput:
            continue
        return grammar
    return None


# --- the playhouse variant's functions, for code that only writes the project's format ---

GRAMMAR_VERSION: Final[int] = 1
"""Version of the playhouse variant (the demo models' manifests record it)."""

STOP_STRINGS: Final = PLAYHOUSE.stop_strings
escape: Final = codecs.PLAYHOUSE_CODEC.escape
unescape: Final = codecs.PLAYHOUSE_CODEC.unescape
post_header: Final = PLAYHOUSE.post_header
post_prompt: Final = PLAYHOUSE.post_prompt
open_tag: Final = PLAYHOUSE.open_tag
comment_block: Final = PLAYHOUSE.comment_block
training_line: Final = PLAYHOUSE.training_line
reply_prompt: Final = PLAYHOUSE.reply_prompt
parse_reply: Final = PLAYHOUSE.parse_reply
parse_post: Final = PLAYHOUSE.parse_post
parse_training_line: Final = PLAYHOUSE.parse_training_line
