"""A persona's ``grammar``: its values, the defaults it gives ``[generation]``, the
deprecated ``grammar_version`` and what ``personas check`` shows."""

from __future__ import annotations

import io
from pathlib import Path

from playhouse.commands.personas import check as check_command
from playhouse.grammar import PLAYHOUSE, SSI_BOT, SSI_BOT_2021
from playhouse.personas import load_cast

BASE = """\
name = "{name}"
display_name = "{name}"
kind = "text"
model = "some/model"
rooms = ["Technology"]
{top}
[activity]
posts_per_day = 1
{tables}
"""


def folder_with(tmp_path: Path, **files: tuple[str, str]) -> Path:
    folder = tmp_path / "personas"
    folder.mkdir()
    (folder / "rooms.toml").write_text('[[room]]\nname = "Technology"\n', encoding="utf-8")
    for name, (top, tables) in files.items():
        (folder / f"{name.lower()}.toml").write_text(
            BASE.format(name=name, top=top, tables=tables), encoding="utf-8")
    return folder


def test_the_grammar_selects_the_variant_and_its_sampling_defaults(tmp_path: Path) -> None:
    folder = folder_with(
        tmp_path,
        Plain=("", ""),
        New=('grammar = "ssi-bot"', ""),
        Old=('grammar = "ssi-bot-2021"', "[generation]\nmax_prompt_tokens = 300\ntop_k = 7\n"),
        Set=('grammar = "ssi-bot"', "[generation]\nrepetition_penalty = 1.2\n"
             "max_new_tokens = 100\n"),
    )
    cast = load_cast(folder)
    assert cast.ok and not cast.warnings, cast.errors
    plain, new, old, fixed = (cast.personas[n] for n in ("Plain", "New", "Old", "Set"))
    assert plain.grammar == "playhouse" and plain.variant is PLAYHOUSE
    assert plain.generation.repetition_penalty == 1.1 and plain.generation.max_new_tokens == 96
    assert new.variant is SSI_BOT
    assert new.generation.repetition_penalty == 1.008
    assert (new.generation.max_prompt_tokens, new.generation.max_new_tokens) == (400, 624)
    assert old.variant is SSI_BOT_2021
    assert (old.generation.max_prompt_tokens, old.generation.max_new_tokens) == (300, 724)
    assert old.generation.top_k == 7 and old.generation.temperature == 0.8
    # What the file sets is never replaced.
    assert fixed.generation.repetition_penalty == 1.2
    assert fixed.generation.max_new_tokens == 100


def test_an_unknown_grammar_is_a_field_error(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, Odd=('grammar = "gpt-4"', ""), Fine=("", ""))
    cast = load_cast(folder)
    assert set(cast.personas) == {"Fine"}
    (error,) = cast.errors
    assert (error.file, error.field) == ("odd.toml", "grammar")
    assert "unknown grammar 'gpt-4'" in error.reason and '"ssi-bot-2021"' in error.reason


def test_grammar_version_1_still_loads_with_a_warning(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, Legacy=("grammar_version = 1", ""))
    cast = load_cast(folder)
    assert cast.ok and cast.personas["Legacy"].grammar == "playhouse"
    (warning,) = cast.warnings
    assert (warning.file, warning.field) == ("legacy.toml", "grammar_version")
    assert 'write grammar = "playhouse"' in warning.reason
    out = io.StringIO()
    assert check_command(folder, out) == 0
    assert "0 errors, 1 warnings" in out.getvalue()
    assert "warning: legacy.toml: grammar_version: deprecated" in out.getvalue()


def test_a_grammar_version_that_cannot_stand_for_the_grammar_is_an_error(
    tmp_path: Path
) -> None:
    folder = folder_with(
        tmp_path,
        Two=("grammar_version = 2", ""),
        Text=('grammar_version = "1"', ""),
        Clash=('grammar_version = 1\ngrammar = "ssi-bot"', ""),
    )
    cast = load_cast(folder)
    assert not cast.personas
    reasons = {e.file: (e.field, e.reason) for e in cast.errors}
    assert reasons["two.toml"][0] == "grammar_version"
    assert "2 was never a version" in reasons["two.toml"][1]
    assert "'1' was never a version" in reasons["text.toml"][1]
    assert "contradicts grammar = 'ssi-bot'" in reasons["clash.toml"][1]


def test_check_shows_the_grammar(tmp_path: Path) -> None:
    folder = folder_with(tmp_path, New=('grammar = "ssi-bot"', ""), Plain=("", ""))
    out = io.StringIO()
    assert check_command(folder, out) == 0
    header, *rows = out.getvalue().splitlines()[:3]
    assert header.split() == ["NAME", "KIND", "MODEL", "GRAMMAR", "ROOMS", "POSTS/DAY"]
    assert rows[0].split()[:4] == ["New", "text", "some/model", "ssi-bot"]
    assert rows[1].split()[:4] == ["Plain", "text", "some/model", "playhouse"]
