"""Persona files: the shipped cast, error reporting per file and field, and the pure helpers."""

from __future__ import annotations

import io
import shutil
import tomllib
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from playhouse.commands.personas import check as check_command
from playhouse.constants import DEFAULT_BOT, DEFAULT_ROOM
from playhouse.errors import ConfigError
from playhouse.personas import (
    Activity,
    Cast,
    Persona,
    PersonaError,
    ReplyWeights,
    load_cast,
    load_cast_strict,
    load_rooms,
    mentions,
    resolve_model,
)
from playhouse.scheduling.scoring import ReplyFeatures, reply_probability

SHIPPED = Path(__file__).resolve().parents[2] / "personas"

GOOD = """\
name = "{name}"
display_name = "{name}"
kind = "text"
model = "playhouse/{lower}-gpt2"
rooms = ["Sports", "Technology"]

[activity]
posts_per_day = 6
per_hour_cap = 5

[generation]
temperature = 0.8

[look]
colour = "#123456"
avatar = "x"
"""


def good(name: str) -> str:
    return GOOD.format(name=name, lower=name.lower())


def make_folder(tmp_path: Path, files: dict[str, str]) -> Path:
    """rooms.toml and imagebot.toml from the shipped cast, one good persona, then ``files``."""
    folder = tmp_path / "personas"
    folder.mkdir()
    shutil.copy(SHIPPED / "rooms.toml", folder / "rooms.toml")
    shutil.copy(SHIPPED / "imagebot.toml", folder / "imagebot.toml")
    (folder / "good.toml").write_text(good("GoodBot"), encoding="utf-8")
    for file_name, text in files.items():
        (folder / file_name).write_text(text, encoding="utf-8")
    return folder


def text_persona(**activity: object) -> Persona:
    raw = tomllib.loads(good("Tester"))
    raw["activity"].update(activity)
    return msgspec.convert(raw, type=Persona)


# --- the shipped cast ------------------------------------------------------------------


def test_shipped_cast_loads_without_errors() -> None:
    cast = load_cast(SHIPPED)
    assert cast.errors == []
    assert len(cast.personas) >= 9
    image_bot = cast.personas[DEFAULT_BOT]
    assert image_bot.kind == "image"
    assert image_bot.image is not None
    assert cast.rooms[DEFAULT_ROOM].default_bot == DEFAULT_BOT
    assert "Spez" in cast.personas
    text_kinds = [p for p in cast.personas.values() if p.kind == "text"]
    assert len(text_kinds) >= 8
    for room in cast.rooms:
        assert any(p.kind == "text" for p in cast.in_room(room)), room


def test_shipped_rooms_file() -> None:
    rooms = load_rooms(SHIPPED / "rooms.toml")
    assert DEFAULT_ROOM in rooms
    for name in ("AskCoopAnything", "CatsAndDogs", "Sports", "Technology", "Programming"):
        assert name in rooms
    assert {"Art", "Candles"} <= set(rooms)


def test_shipped_personas_have_distinct_looks() -> None:
    cast = load_cast_strict(SHIPPED)
    colours = [p.look.colour.lower() for p in cast.personas.values()]
    assert len(set(colours)) == len(colours)


def test_check_command_on_shipped_folder() -> None:
    out = io.StringIO()
    assert check_command(SHIPPED, out) == 0
    text = out.getvalue()
    for name in load_cast(SHIPPED).personas:
        assert name in text
    assert "0 errors" in text


# --- bad input, one file at a time ------------------------------------------------------

BAD_CASES = [
    pytest.param(
        "wrong.toml",
        good("WrongType").replace("per_hour_cap = 5", 'per_hour_cap = "many"'),
        "activity.per_hour_cap",
        "expected an integer, got a string",
        id="wrong-type",
    ),
    pytest.param(
        "weights.toml",
        good("WeightBot") + '\n[activity.weights]\nbot = "lots"\n',
        "activity.weights.bot",
        "expected a number",
        id="wrong-type-nested",
    ),
    pytest.param(
        "unknown.toml",
        good("UnknownBot").replace("[generation]", "[generation]\ntemprature = 0.5"),
        "generation.temprature",
        "unknown field",
        id="unknown-field",
    ),
    pytest.param(
        "unknown_top.toml",
        'mood = "happy"\n' + good("MoodBot"),
        "mood",
        "unknown field",
        id="unknown-top-field",
    ),
    pytest.param(
        "nomodel.toml",
        good("NoModel").replace('model = "playhouse/nomodel-gpt2"\n', ""),
        "model",
        "missing required field",
        id="missing-model",
    ),
    pytest.param(
        "z_duplicate.toml",
        good("GoodBot"),
        "name",
        "duplicate persona name 'GoodBot', already defined in good.toml",
        id="duplicate-name",
    ),
    pytest.param(
        "z_duplicate_case.toml",
        good("goodbot"),
        "name",
        "duplicate persona name",
        id="duplicate-name-other-case",
    ),
    pytest.param(
        "lost.toml",
        good("LostBot").replace('["Sports", "Technology"]', '["Sports", "Technology", "Nowhere"]'),
        "rooms[2]",
        "unknown room 'Nowhere'",
        id="unknown-room",
    ),
    pytest.param(
        "broken.toml",
        good("BrokenBot").replace("posts_per_day = 6", "posts_per_day = "),
        "(syntax)",
        "invalid TOML",
        id="toml-syntax",
    ),
    pytest.param(
        "hot.toml",
        good("HotBot").replace("temperature = 0.8", "temperature = 7.5"),
        "generation.temperature",
        "<= 5.0",
        id="temperature-out-of-range",
    ),
    pytest.param(
        "painter.toml",
        good("Painter").replace('kind = "text"', 'kind = "image"'),
        "image",
        "needs an [image] table",
        id="image-without-image-table",
    ),
    pytest.param(
        "texty.toml",
        good("Texty") + "\n[image]\nsteps = 10\n",
        "image",
        "only image personas",
        id="text-with-image-table",
    ),
    pytest.param(
        "hours.toml",
        good("Hours").replace("per_hour_cap = 5", "active_hours = [6, 6]"),
        "activity.active_hours",
        "use [0, 24]",
        id="empty-active-hours",
    ),
    pytest.param(
        "colour.toml",
        good("Colour").replace('"#123456"', '"red"'),
        "look.colour",
        "#rrggbb",
        id="bad-colour",
    ),
    pytest.param(
        "name.toml",
        good("Bad Name"),
        "name",
        "letters, digits",
        id="bad-name",
    ),
]


@pytest.mark.parametrize(("file_name", "text", "field", "reason"), BAD_CASES)
def test_bad_file_is_reported_and_others_still_load(
    tmp_path: Path, file_name: str, text: str, field: str, reason: str
) -> None:
    folder = make_folder(tmp_path, {file_name: text})
    cast = load_cast(folder)

    assert len(cast.errors) == 1, cast.errors
    error = cast.errors[0]
    assert error.file == file_name
    assert error.field == field
    assert reason in error.reason
    assert set(cast.personas) == {"GoodBot", "ImageBot"}

    out = io.StringIO()
    assert check_command(folder, out) == 1
    assert f"{file_name}: {field}: " in out.getvalue()
    assert "GoodBot" in out.getvalue()


def test_several_bad_files_each_reported(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {
            "a.toml": good("Alpha").replace("temperature = 0.8", "temperature = 0"),
            "b.toml": good("Beta").replace('model = "playhouse/beta-gpt2"\n', ""),
            "c.toml": good("Gamma"),
        },
    )
    cast = load_cast(folder)
    assert [(e.file, e.field) for e in cast.errors] == [
        ("a.toml", "generation.temperature"),
        ("b.toml", "model"),
    ]
    assert set(cast.personas) == {"Gamma", "GoodBot", "ImageBot"}


def test_default_bot_must_exist(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {})
    (folder / "imagebot.toml").unlink()
    cast = load_cast(folder)
    assert [str(e) for e in cast.errors] == [
        "rooms.toml: room[0].default_bot: no persona named 'ImageBot' was loaded"
    ]
    assert cast.rooms[DEFAULT_ROOM].default_bot is None


def test_default_bot_must_live_in_room(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {})
    rooms = (folder / "rooms.toml").read_text(encoding="utf-8")
    rooms = rooms.replace('name = "Sports"\n', 'name = "Sports"\ndefault_bot = "ImageBot"\n')
    (folder / "rooms.toml").write_text(rooms, encoding="utf-8")
    cast = load_cast(folder)
    assert len(cast.errors) == 1
    assert cast.errors[0].file == "rooms.toml"
    assert cast.errors[0].field.endswith("].default_bot")
    assert "does not live in Sports" in cast.errors[0].reason


def test_bad_room_entry(tmp_path: Path) -> None:
    folder = make_folder(tmp_path, {})
    with (folder / "rooms.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[[room]]\nname = "x"\n\n[[room]]\nname = "Art"\n')
    cast = load_cast(folder)
    fields = [(e.file, e.field) for e in cast.errors]
    assert ("rooms.toml", "room[10].name") in fields
    assert ("rooms.toml", "room[11].name") in fields
    with pytest.raises(ConfigError, match=r"room\[10\]\.name"):
        load_rooms(folder / "rooms.toml")


def test_without_rooms_file_rooms_come_from_personas(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "one.toml").write_text(good("One"), encoding="utf-8")
    (folder / "two.toml").write_text(
        good("Two").replace('["Sports", "Technology"]', '["Gardening"]'), encoding="utf-8"
    )
    cast = load_cast(folder)
    assert cast.errors == []
    assert set(cast.rooms) == {"Sports", "Technology", "Gardening"}
    assert all(room.public and room.default_bot is None for room in cast.rooms.values())


def test_room_names_take_rooms_file_spelling(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path, {"lower.toml": good("Lower").replace('"Sports", ', '"sports", ')}
    )
    cast = load_cast(folder)
    assert cast.errors == []
    assert cast.personas["Lower"].rooms == ("Sports", "Technology")


def test_missing_directory(tmp_path: Path) -> None:
    cast = load_cast(tmp_path / "nope")
    assert len(cast.errors) == 1
    assert not cast.ok


def test_load_cast_strict_raises_with_every_line(tmp_path: Path) -> None:
    folder = make_folder(
        tmp_path,
        {
            "hot.toml": good("HotBot").replace("temperature = 0.8", "temperature = 9"),
            "lost.toml": good("Lost").replace('"Technology"]', '"Technology", "Nowhere"]'),
        },
    )
    with pytest.raises(ConfigError) as info:
        load_cast_strict(folder)
    message = str(info.value)
    assert "hot.toml: generation.temperature: must be a number <= 5.0" in message
    assert "lost.toml: rooms[2]: unknown room 'Nowhere'" in message
    assert "2 errors" in message


def test_persona_error_str() -> None:
    assert str(PersonaError("a.toml", "activity.weights.bot", "bad")) == (
        "a.toml: activity.weights.bot: bad"
    )
    assert Cast().ok


# --- reply probability ------------------------------------------------------------------


def features(**overrides: object) -> ReplyFeatures:
    values: dict[str, object] = {
        "author_is_human": False,
        "author_is_bot": True,
        "mentions_me": False,
        "positive_hits": 0,
        "negative_hits": 0,
        "is_question": False,
        "my_thread": False,
        "depth": 0,
        "age_hours": 0.0,
    }
    values.update(overrides)
    return ReplyFeatures(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def coop() -> Persona:
    return load_cast_strict(SHIPPED).personas["CoopBot"]


def test_mention_makes_reply_near_certain(coop: Persona) -> None:
    base, _ = reply_probability(coop, features())
    mentioned, parts = reply_probability(coop, features(mentions_me=True))
    assert base < 0.2
    assert mentioned > 0.95
    assert parts["mention"] == coop.activity.weights.mention


def test_negative_keyword_lowers(coop: Persona) -> None:
    plain, _ = reply_probability(coop, features(author_is_human=True, author_is_bot=False))
    negative, parts = reply_probability(
        coop, features(author_is_human=True, author_is_bot=False, negative_hits=1)
    )
    positive, _ = reply_probability(
        coop, features(author_is_human=True, author_is_bot=False, positive_hits=2)
    )
    assert negative < plain < positive
    assert parts["keyword_negative"] < 0


def test_keyword_hits_are_capped(coop: Persona) -> None:
    three, _ = reply_probability(coop, features(positive_hits=3))
    many, _ = reply_probability(coop, features(positive_hits=300))
    assert three == many


def test_age_decays_to_exactly_zero(coop: Persona) -> None:
    limit = coop.activity.max_age_hours
    fresh, _ = reply_probability(coop, features(mentions_me=True))
    older, _ = reply_probability(coop, features(mentions_me=True, age_hours=limit / 2))
    at_limit, parts = reply_probability(coop, features(mentions_me=True, age_hours=limit))
    past, _ = reply_probability(coop, features(mentions_me=True, age_hours=limit * 3))
    assert fresh > older > 0
    assert at_limit == 0.0
    assert past == 0.0
    assert parts["decay"] == 0.0


def test_depth_lowers(coop: Persona) -> None:
    shallow, _ = reply_probability(coop, features(depth=0))
    deep, parts = reply_probability(coop, features(depth=6))
    assert deep < shallow
    assert parts["depth"] == pytest.approx(-6 * coop.activity.weights.depth_penalty)


def test_parts_keys(coop: Persona) -> None:
    _, parts = reply_probability(coop, features())
    assert set(parts) == {
        "base",
        "human",
        "bot",
        "mention",
        "keyword_positive",
        "keyword_negative",
        "question",
        "own_thread",
        "depth",
        "score",
        "decay",
    }


weights_strategy = st.builds(
    ReplyWeights,
    base=st.floats(-20, 20),
    human=st.floats(-20, 20),
    bot=st.floats(-20, 20),
    mention=st.floats(0, 20),
    keyword_positive=st.floats(-20, 20),
    keyword_negative=st.floats(-20, 0),
    question=st.floats(-20, 20),
    own_thread=st.floats(-20, 20),
    depth_penalty=st.floats(0, 10),
)
features_strategy = st.builds(
    ReplyFeatures,
    author_is_human=st.booleans(),
    author_is_bot=st.booleans(),
    mentions_me=st.booleans(),
    positive_hits=st.integers(-5, 10_000),
    negative_hits=st.integers(-5, 10_000),
    is_question=st.booleans(),
    my_thread=st.booleans(),
    depth=st.integers(0, 10_000),
    age_hours=st.floats(-10, 1_000, allow_nan=False),
)


@given(
    weights=weights_strategy,
    feats=features_strategy,
    max_age=st.floats(0.1, 336),
)
def test_probability_always_in_unit_interval(
    weights: ReplyWeights, feats: ReplyFeatures, max_age: float
) -> None:
    persona = Persona(
        name="Prop",
        display_name="Prop",
        kind="text",
        model="m",
        rooms=("Sports",),
        activity=Activity(posts_per_day=1, max_age_hours=max_age, weights=weights),
    )
    probability, parts = reply_probability(persona, feats)
    assert 0.0 <= probability <= 1.0
    if feats.age_hours >= max_age:
        assert probability == 0.0
    assert 0.0 <= parts["decay"] <= 1.0


# --- schedule, mentions, models -----------------------------------------------------------


def test_is_active_plain_window() -> None:
    persona = text_persona(active_hours=[8, 20])
    assert persona.is_active(8)
    assert persona.is_active(19)
    assert not persona.is_active(20)
    assert not persona.is_active(3)


def test_is_active_wraps_past_midnight() -> None:
    persona = text_persona(active_hours=[20, 4])
    assert persona.is_active(20)
    assert persona.is_active(23)
    assert persona.is_active(0)
    assert persona.is_active(3)
    assert not persona.is_active(4)
    assert not persona.is_active(12)
    assert persona.is_active(24 + 1)  # reduced modulo 24


def test_is_active_all_day_by_default() -> None:
    persona = text_persona()
    assert all(persona.is_active(hour) for hour in range(24))


def test_mentions() -> None:
    names = ["CoopBot", "Spez", "ImageBot", "Web-Bot"]
    text = "hey u/coopbot and /u/SPEZ, what about u/ImageBots or user/Spez? cc u/Web-Bot."
    assert mentions(text, names) == {"CoopBot", "Spez", "Web-Bot"}
    assert mentions("CoopBot without the prefix", names) == set()
    assert mentions("(u/ImageBot)", names) == {"ImageBot"}
    assert mentions("", names) == set()


def test_keyword_hits() -> None:
    persona = load_cast_strict(SHIPPED).personas["WhiskersBot"]
    assert persona.keywords.hits("My CAT had a nap. Cats!") == (3, 0)
    assert persona.keywords.hits("catalogue bath time") == (0, 1)


def test_resolve_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub = text_persona()
    models = tmp_path / "models"
    assert resolve_model(hub, models) == "playhouse/tester-gpt2"

    demo = models / "demo" / "Tester"
    demo.mkdir(parents=True)
    assert resolve_model(hub, models) == str(demo)

    local = tmp_path / "local-model"
    local.mkdir()
    absolute = msgspec.structs.replace(hub, model=str(local))
    assert resolve_model(absolute, models) == str(local)

    monkeypatch.chdir(tmp_path)
    relative = msgspec.structs.replace(hub, model="local-model")
    assert resolve_model(relative, models) == "local-model"
