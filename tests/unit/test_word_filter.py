"""The word filter: whole words, whatever the disguise, and nothing that merely contains one."""

from __future__ import annotations

import pytest

from playhouse.errors import ConfigError
from playhouse.moderation.filter import WordFilter

BLOCKED = ["darn", "ass", "slut", "kill yourself", "балда"]


@pytest.fixture(scope="module")
def words() -> WordFilter:
    return WordFilter(BLOCKED)


@pytest.mark.parametrize(("text", "word", "written"), [
    ("well DARN it", "darn", "DARN"),
    ("Darn.", "darn", "Darn"),
    ("d\u00e4rn", "darn", "d\u00e4rn"),                         # an accent
    ("da\u0301rn", "darn", "da\u0301rn"),                       # a combining accent
    ("d\u0430rn", "darn", "d\u0430rn"),                         # Cyrillic a
    ("\u0501arn", "darn", "\u0501arn"),                         # Cyrillic komi de
    ("d\u200barn", "darn", "d\u200barn"),                       # zero-width space
    ("da\u00adr\u2060n", "darn", "da\u00adr\u2060n"),           # soft hyphen, word joiner
    ("\uff44\uff41\uff52\uff4e", "darn", "\uff44\uff41\uff52\uff4e"),  # fullwidth
    ("\U0001d41d\U0001d41a\U0001d42b\U0001d427", "darn",
     "\U0001d41d\U0001d41a\U0001d42b\U0001d427"),                  # mathematical bold
    ("d4rn", "darn", "d4rn"),
    ("d@rn", "darn", "d@rn"),
    ("daaaarn", "darn", "daaaarn"),
    ("d.a.r.n", "darn", "d.a.r.n"),
    ("d a r n", "darn", "d a r n"),
    ("d - a - r - n", "darn", "d - a - r - n"),
    ("da.rn", "darn", "da.rn"),
    ("a$$", "ass", "a$$"),
    ("@ss", "ass", "@ss"),
    ("you asss", "ass", "asss"),
    ("s1ut", "slut", "s1ut"),
    ("$lut!", "slut", "$lut"),
    ("please KILL   yourself", "kill yourself", "KILL   yourself"),
    ("k1ll y0urself", "kill yourself", "k1ll y0urself"),
    ("БАЛДА ты", "балда", "БАЛДА"),
    ("what an ass.", "ass", "ass"),
    ("an Ass-hat", "ass", "Ass"),
    ("darn@home", "darn", "darn"),
])
def test_blocked_words_are_found_through_trivial_disguises(
    words: WordFilter, text: str, word: str, written: str
) -> None:
    hit = words.find(text)
    assert hit is not None, text
    assert (hit.word, hit.written) == (word, written)


@pytest.mark.parametrize("text", [
    "as", "as is", "class", "passing", "assassin", "darned", "sluts are not blocked",
    "hello!", "kill the process", "yourself", "3 + 4 = 7", "", "a b c", "wait...what?!",
    "slutty",  # whole words only: what contains a blocked word is not it
])
def test_what_only_contains_or_resembles_a_blocked_word_passes(words: WordFilter,
                                                               text: str) -> None:
    assert words.find(text) is None


def test_no_words_block_nothing() -> None:
    empty = WordFilter([])
    assert not empty
    assert empty.find("darn") is None


def test_a_blocked_word_written_with_disguises_in_the_settings_means_the_word() -> None:
    assert WordFilter(["D4RN"]).find("darn") is not None


def test_a_blocked_word_without_letters_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="no letters"):
        WordFilter(["!!!"])


def test_long_texts_of_single_letters_stay_cheap(words: WordFilter) -> None:
    # every letter spread out is tried joined: the joins stop at once when off-word
    assert words.find("a " * 5000) is None
    assert words.find(("a b " * 2500) + "d a r n") is not None
