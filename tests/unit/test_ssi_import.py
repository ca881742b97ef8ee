"""``playhouse personas import-ssi``: ssi-bot bot configs into persona files."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest

from playhouse.commands.personas import check as check_command
from playhouse.commands.personas import import_ssi as import_command
from playhouse.errors import ConfigError
from playhouse.personas import load_cast
from playhouse.scheduling.scoring import ReplyFeatures, reply_probability
from playhouse.ssi_import import import_ini

INI = """\
[DEFAULT]
negative_keywords=darn, heck
subreddit_flair_id_map=SubSimGPT2Interactive=ff1e3b8e-a518-11ea-b87f-0e2836404d8b

[Coffee_ssi]
text_model_path = models/coffee/
positive_keywords=coffee,espresso, bean.*
subreddits = SubSimGPT2Interactive, Coffee
new_submission_schedule=SubSimGPT2Interactive=8,Coffee=12
image_post_frequency = 0.2
set_nsfw_flair_on_submissions = false
toxicity_threshold = 0.7

[Old-Bot]
model_path = /srv/models/old
subreddit = test
post_frequency = 6
use_reply_sense = false
base_reply_probability = 0.1
human_author_reply_boost = 0.2
"""


def _features(**changes: object) -> ReplyFeatures:
    values: dict[str, object] = {
        "author_is_human": True, "author_is_bot": False, "mentions_me": False,
        "positive_hits": 0, "negative_hits": 0, "is_question": False, "my_thread": False,
        "depth": 0, "age_hours": 0.0,
    }
    values.update(changes)
    return ReplyFeatures(**values)  # type: ignore[arg-type]


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    path = tmp_path / "ssi" / "ssi-bot.ini"
    path.parent.mkdir()
    path.write_text(INI, encoding="utf-8")
    (path.parent / "models" / "coffee").mkdir(parents=True)
    return path


def test_every_bot_becomes_a_persona_that_checks(ini: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "personas"
    out = io.StringIO()
    assert import_command(ini, out_dir, out) == 0
    report = out.getvalue()
    assert f"wrote {out_dir / 'coffee_ssi.toml'} (u/Coffee_ssi, grammar ssi-bot)" in report
    assert f"wrote {out_dir / 'old-bot.toml'} (u/Old-Bot, grammar ssi-bot-2021)" in report
    check = io.StringIO()
    assert check_command(out_dir, check) == 0, check.getvalue()

    cast = load_cast(out_dir)
    coffee, old = cast.personas["Coffee_ssi"], cast.personas["Old-Bot"]
    assert coffee.model == str(ini.parent / "models" / "coffee")
    assert coffee.grammar == "ssi-bot" and old.grammar == "ssi-bot-2021"
    assert coffee.rooms == ("SubSimGPT2Interactive", "Coffee") and old.rooms == ("test",)
    assert coffee.activity.posts_per_day == 24 / 8 + 24 / 12
    assert old.activity.posts_per_day == 4
    assert coffee.keywords.positive == ("coffee", "espresso")
    assert coffee.keywords.negative == ("darn", "heck") == coffee.generation.blocked_words
    # The grammar's sampling defaults apply to what the import does not set.
    assert coffee.generation.repetition_penalty == 1.008
    assert coffee.generation.max_new_tokens == 624

    # Not mapped, said so: flair, NSFW, image posts, toxicity, the regex keyword, the model.
    for said in ("subreddit_flair_id_map", "set_nsfw_flair_on_submissions",
                 "image_post_frequency = 0.2", "toxicity_threshold", "'bean.*'",
                 "/srv/models/old does not exist"):
        assert said in report, said


def test_reply_chances_match_ssi_bots(ini: Path, tmp_path: Path) -> None:
    import_command(ini, tmp_path / "p", io.StringIO())
    cast = load_cast(tmp_path / "p")
    coffee, old = cast.personas["Coffee_ssi"], cast.personas["Old-Bot"]

    def chance(persona: object, **changes: object) -> float:
        return reply_probability(persona, _features(**changes))[0]  # type: ignore[arg-type]

    # ssi-bot: base -0.1 + human 0.3 = 0.2; + positive keyword 0.5 = 0.7; a bot's -0.2 is 0.
    assert chance(coffee) == pytest.approx(0.2, abs=0.005)
    assert chance(coffee, positive_hits=1) == pytest.approx(0.7, abs=0.005)
    assert chance(coffee, my_thread=True) == pytest.approx(0.7, abs=0.005)
    assert chance(coffee, is_question=True) == pytest.approx(0.6, abs=0.005)
    assert chance(coffee, depth=1) == pytest.approx(0.15, abs=0.005)
    assert chance(coffee, author_is_human=False, author_is_bot=True) <= 0.011
    assert chance(coffee, mentions_me=True) == pytest.approx(0.99, abs=0.005)
    assert chance(coffee, negative_hits=1) < 1e-6  # ssi-bot never answers such a text
    # The section's own values: 0.1 + 0.2.
    assert chance(old) == pytest.approx(0.3, abs=0.005)
    assert math.isclose(old.activity.max_age_hours, 24.0)


def test_an_existing_file_is_kept_unless_forced(ini: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "personas"
    out_dir.mkdir()
    (out_dir / "old-bot.toml").write_text("# mine\n", encoding="utf-8")
    out = io.StringIO()
    assert import_command(ini, out_dir, out) == 1
    assert "[Old-Bot] not imported:" in out.getvalue() and "--force" in out.getvalue()
    assert (out_dir / "old-bot.toml").read_text(encoding="utf-8") == "# mine\n"
    assert (out_dir / "coffee_ssi.toml").is_file()
    assert import_command(ini, out_dir, io.StringIO(), force=True) == 0
    assert 'grammar = "ssi-bot-2021"' in (out_dir / "old-bot.toml").read_text(encoding="utf-8")


def test_rooms_missing_from_rooms_toml_are_named(ini: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "personas"
    out_dir.mkdir()
    (out_dir / "rooms.toml").write_text('[[room]]\nname = "coffee"\n', encoding="utf-8")
    out = io.StringIO()
    import_command(ini, out_dir, out, name="Coffee_ssi")
    assert "r/SubSimGPT2Interactive is not in rooms.toml: add it there" in out.getvalue()
    assert 'rooms = ["SubSimGPT2Interactive", "coffee"]' in (
        out_dir / "coffee_ssi.toml").read_text(encoding="utf-8")


def test_bad_configs_are_refused_with_a_reason(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.ini"
    with pytest.raises(ConfigError, match="cannot read the ssi-bot config"):
        import_ini(missing)
    broken = tmp_path / "broken.ini"
    broken.write_text("no section header\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot read"):
        import_ini(broken)
    single = tmp_path / "single.ini"
    single.write_text("[DEFAULT]\nmodel_path = m\nsubreddit = test\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pass --name"):
        import_ini(single)
    (result,) = import_ini(single, name="OldTimer")
    assert not result.error and 'name = "OldTimer"' in result.text
    one_bot = _write(tmp_path / "one.ini", "[A_bot]\nmodel_path = m\n")
    with pytest.raises(ConfigError, match=r"no section \[Nobody\] \(it has A_bot\)"):
        import_ini(one_bot, name="Nobody")

    bad = _write(tmp_path / "bad.ini", "[x]\nmodel_path = m\n[NoModel]\nsubreddits = a_b\n"
                 "[Weird]\nmodel_path = m\nsubreddits = a, b\n")
    results = {r.section: r for r in import_ini(bad)}
    assert "cannot be a persona name" in results["x"].error
    assert "no text_model_path" in results["NoModel"].error
    assert "none of the subreddits can be a room" in results["Weird"].error
    out = io.StringIO()
    assert import_command(bad, tmp_path / "out", out) == 1
    assert not (tmp_path / "out").exists()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
