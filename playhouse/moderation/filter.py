"""The word filter: does a text use one of ``[moderation] blocked_words``?

Whole words (or whole phrases), whatever their letter case, and robust to the trivial
ways of writing a word so that a plain match misses it. Both the blocked words and the
text are folded the same way, a character at a time:

1. Unicode compatibility forms (NFKC: fullwidth letters, ligatures, circled and
   mathematical letters), then case folding (``ß`` is ``ss``);
2. accents and other combining marks dropped (``därn`` is ``darn``), and every invisible
   format character (zero-width spaces and joiners, soft hyphens, direction marks);
3. letters of other scripts that look like a Latin one read as that one (a Cyrillic
   ``a`` in ``darn``), by Unicode's confusables table (the ``confusable_homoglyphs``
   package's copy of it);
4. digits and symbols that stand for letters (``0`` o, ``1 ! |`` i, ``3`` e, ``4 @`` a,
   ``5 $`` s, ``7 +`` t ...), and ``l`` read as ``i`` (so ``s1ut`` and ``slut`` fold
   alike).

Then the text is cut into words, and a word matches a blocked one when it is that word
with some of its letters repeated (``daaarn``; ``as`` never matches ``ass``). Letters
spread out (``d.a.r.n``, ``d a r n``) and words cut by one punctuation mark (``da.rn``)
are also tried joined. Languages written without spaces are matched by whole runs of
letters.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from playhouse.errors import ConfigError

LOOKALIKE: dict[str, str] = {
    "0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t",
    "8": "b", "9": "g", "l": "i",
    "@": "a", "$": "s", "!": "i", "|": "i", "+": "t", "€": "e",
}
"""Digits, symbols and letters folded to the letter they are read as."""
LETTER_SYMBOLS = frozenset("@$!|+€")
"""Symbols that count as letters inside a word (``d@rn``), and not at its ends
(``hello!``)."""
SPREAD_GAP_MAX = 3
"""Separator characters allowed between the letters of a spread-out word (``f . u``)."""
SPREAD_RUN_MAX = 40
"""Longest run of single letters tried joined."""
COMPOUND_MAX = 6
"""Most word parts joined across single punctuation marks (``fu.ck``)."""


@dataclass(frozen=True, slots=True)
class Hit:
    """A blocked word found in a text."""

    word: str
    """The blocked word (or phrase) as the settings spell it."""
    written: str
    """How the text writes it."""


@dataclass(frozen=True, slots=True)
class _Token:
    main: str
    """The folded word, without letter symbols at its ends (``hello!`` is ``hello``)."""
    start: int
    end: int
    """Its span in the original text."""
    forms: tuple[tuple[str, int, int], ...]
    """What else it may be, each with its span: the word with the symbols at its ends
    (``a$$``, ``$lut!``), and the parts between its symbols (``darn@home``)."""


@functools.lru_cache(maxsize=16384)
def _fold_char(ch: str) -> str:
    """What one character folds to (steps 1-4 of the module doc); may be empty or several."""
    out: list[str] = []
    for piece in unicodedata.normalize("NFKC", ch).casefold():
        for part in unicodedata.normalize("NFD", piece):
            category = unicodedata.category(part)
            if category in ("Mn", "Me", "Cf"):
                continue  # combining marks and invisible format characters
            if not part.isascii() and part.isalpha():
                part = _latin_lookalike(part)
            out.append(LOOKALIKE.get(part, part))
    return "".join(out)


def _latin_lookalike(ch: str) -> str:
    """The ASCII letter or digit ``ch`` is confusable with (two hops through the table at
    most: Cyrillic ``т`` is a small capital T, which is a T), else ``ch``."""
    from confusable_homoglyphs import confusables

    frontier, seen = [ch], {ch}
    for _ in range(3):
        following: list[str] = []
        for current in frontier:
            for entry in confusables.is_confusable(current, greedy=True,
                                                   preferred_aliases=[]) or []:
                if entry["character"] != current:
                    continue
                for glyph in entry["homoglyphs"]:
                    folded = unicodedata.normalize(
                        "NFKC", str(glyph["c"]).strip("\u200e\u200f")).casefold()
                    if len(folded) == 1 and folded.isascii() and folded.isalnum():
                        return folded
                    if len(folded) == 1 and folded not in seen:
                        seen.add(folded)
                        following.append(folded)
        frontier = following
    return ch


def _folded(text: str) -> list[tuple[str, int]]:
    """``text`` folded, each character with the index of the one it came from."""
    return [(c, i) for i, ch in enumerate(text) for c in _fold_char(ch)]


def _is_word_char(c: str) -> bool:
    return c.isalnum() and c != "_"


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    run: list[tuple[str, int, bool]] = []

    def close() -> None:
        letters = [k for k, (_, _, symbol) in enumerate(run) if not symbol]
        if letters:  # a run of symbols alone is no word
            first, last = letters[0], letters[-1]
            forms = [_span(run[a:b]) for a, b in ((0, len(run)), (0, last + 1),
                                                  (first, len(run)))]
            part: list[tuple[str, int, bool]] = []
            for item in [*run, ("", -1, True)]:
                if not item[2]:
                    part.append(item)
                elif part:
                    forms.append(_span(part))
                    part = []
            tokens.append(_Token(main="".join(c for c, _, _ in run[first:last + 1]),
                                 start=run[first][1], end=run[last][1] + 1,
                                 forms=tuple(forms)))
        run.clear()

    for c, i in _folded(text):
        original = text[i]
        symbol = original in LETTER_SYMBOLS
        if _is_word_char(c) or symbol:
            run.append((c, i, symbol))
        else:
            close()
    close()
    return tokens


def _span(chars: list[tuple[str, int, bool]]) -> tuple[str, int, int]:
    """Folded characters as a word, with its span in the original text."""
    return "".join(c for c, _, _ in chars), chars[0][1], chars[-1][1] + 1


def _runs(word: str) -> tuple[str, tuple[int, ...]]:
    """``word`` with each run of one letter as one letter, and the runs' lengths."""
    letters: list[str] = []
    counts: list[int] = []
    for ch in word:
        if letters and letters[-1] == ch:
            counts[-1] += 1
        else:
            letters.append(ch)
            counts.append(1)
    return "".join(letters), tuple(counts)


class WordFilter:
    """The blocked words, folded and indexed once; :meth:`find` a text's first one."""

    def __init__(self, words: Iterable[str]) -> None:
        self._single: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
        self._phrases: list[tuple[str, tuple[str, ...]]] = []
        self._prefixes: set[str] = set()
        """Every start of a single blocked word's letters (joins stop when off them)."""
        self.words: tuple[str, ...] = tuple(w.strip() for w in words if w.strip())
        for word in self.words:
            parts = tuple(t.main for t in _tokens(word))
            if not parts:
                raise ConfigError(f"moderation.blocked_words: {word!r} has no letters to "
                                  "match")
            if len(parts) == 1:
                skeleton, counts = _runs(parts[0])
                self._single.setdefault(skeleton, []).append((word, counts))
                self._prefixes.update(skeleton[:n] for n in range(1, len(skeleton) + 1))
            else:
                self._phrases.append((word, parts))

    def __bool__(self) -> bool:
        return bool(self.words)

    def _word(self, form: str) -> str | None:
        """The blocked word ``form`` is (maybe with letters repeated), or None."""
        skeleton, counts = _runs(form)
        for word, wanted in self._single.get(skeleton, ()):
            if all(have >= need for have, need in zip(counts, wanted, strict=True)):
                return word
        return None

    def _find_word(self, text: str, tokens: list[_Token]) -> Hit | None:
        """A single blocked word: each word as it is, then spread-out letters and words cut
        by one punctuation mark, joined."""
        for token in tokens:
            for form, start, end in ((token.main, token.start, token.end), *token.forms):
                word = self._word(form)
                if word is not None:
                    return Hit(word=word, written=text[start:end])
        for spread in (True, False):
            for group in _groups(text, tokens, spread=spread):
                hit = self._joined(text, group)
                if hit is not None:
                    return hit
        return None

    def _joined(self, text: str, group: list[_Token]) -> Hit | None:
        """A blocked word made of consecutive tokens of ``group`` joined; a join stops as
        soon as it is no longer the start of a blocked word (cheap on long runs)."""
        for i in range(len(group)):
            skeleton, counts = "", [0]
            for j in range(i, len(group)):
                for ch in group[j].main:
                    if skeleton and skeleton[-1] == ch:
                        counts[-1] += 1
                    else:
                        skeleton += ch
                        counts = [*counts, 1] if len(skeleton) > 1 else [1]
                if skeleton not in self._prefixes:
                    break
                if j > i:
                    for word, wanted in self._single.get(skeleton, ()):
                        if all(h >= n for h, n in zip(counts, wanted, strict=True)):
                            return Hit(word=word, written=text[group[i].start:group[j].end])
        return None

    def _is(self, part: str, token: _Token) -> bool:
        skeleton, wanted = _runs(part)
        for form in (token.main, *(f for f, _, _ in token.forms)):
            got, counts = _runs(form)
            if got == skeleton and all(h >= n for h, n in zip(counts, wanted, strict=True)):
                return True
        return False

    def find(self, text: str) -> Hit | None:
        """The first blocked word ``text`` uses, or None."""
        if not self.words or not text:
            return None
        tokens = _tokens(text)
        if self._single:
            hit = self._find_word(text, tokens)
            if hit is not None:
                return hit
        for phrase, parts in self._phrases:
            for i in range(len(tokens) - len(parts) + 1):
                window = tokens[i:i + len(parts)]
                if all(self._is(p, t) for p, t in zip(parts, window, strict=True)):
                    return Hit(word=phrase, written=text[window[0].start:window[-1].end])
        return None


def _groups(text: str, tokens: list[_Token], *, spread: bool) -> Iterator[list[_Token]]:
    """Runs of tokens that may be one word written apart: single letters with short gaps
    (``spread``), or any words with a gap of one mark that is not a space."""
    group: list[_Token] = []
    for token in tokens:
        fits = len(token.main) == 1 if spread else True
        if group and fits:
            gap = text[group[-1].end:token.start]
            near = (0 < len(gap) <= SPREAD_GAP_MAX and not gap.strip(" .-_*'·,/\\~")
                    if spread else len(gap) == 1 and not gap.isspace())
            if near and len(group) < (SPREAD_RUN_MAX if spread else COMPOUND_MAX):
                group.append(token)
                continue
        if len(group) > 1:
            yield group
        group = [token] if fits else []
    if len(group) > 1:
        yield group
