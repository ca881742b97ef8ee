"""Personas and rooms: the TOML files under ``personas/``, validated into frozen structs.

One file per persona (``personas/coopbot.toml``) plus ``personas/rooms.toml``, which lists
the seed rooms as ``[[room]]`` tables. :func:`load_cast` reads a folder and returns a
:class:`Cast`: every persona and room that is valid, and one :class:`PersonaError`
(file, dotted field path, reason) for each problem found. A broken file never stops the
others from loading; :func:`load_cast_strict` is the variant that refuses to go on
(the daemons use it); ``playhouse personas check`` prints what it found.

This module also holds the facts that depend only on a persona: whether it is awake at a
given hour (:meth:`Persona.is_active`), which personas a text mentions (:func:`mentions`)
and where its model is loaded from (:func:`resolve_model`). A persona's ``grammar`` names
the tag grammar its model speaks (:attr:`Persona.variant`, from :mod:`playhouse.grammar`);
loading gives its ``[generation]`` table that grammar's defaults for what the file does not
set. How likely it is to answer a comment is the scheduler's
(:mod:`playhouse.scheduling.scoring`).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import structlog

from playhouse.errors import ConfigError
from playhouse.grammar import DEFAULT_GRAMMAR, GPT2_CONTEXT, GRAMMARS, Grammar

log = structlog.get_logger()

ROOMS_FILE: Final = "rooms.toml"
PERSONA_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]{2,32}$"
ROOM_NAME_PATTERN: Final = r"^[A-Za-z0-9_]{3,32}$"
COLOUR_PATTERN: Final = r"^#[0-9a-fA-F]{6}$"


_FILE_FIELD: Final = "(file)"
_SYNTAX_FIELD: Final = "(syntax)"


def _m(text: str, **constraints: Any) -> msgspec.Meta:
    """A field's description (``playhouse personas check`` and docs use it) and its bounds."""
    return msgspec.Meta(description=text, **constraints)


def _invalid(field_name: str, reason: str) -> ValueError:
    """A ``__post_init__`` error in the shape :func:`_translate` turns into field + reason."""
    return ValueError(f"Invalid value for `{field_name}`: {reason}")


PersonaName = Annotated[str, msgspec.Meta(pattern=PERSONA_NAME_PATTERN)]
RoomName = Annotated[str, msgspec.Meta(pattern=ROOM_NAME_PATTERN)]
Word = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
HourStart = Annotated[int, msgspec.Meta(ge=0, le=23)]
HourEnd = Annotated[int, msgspec.Meta(ge=0, le=24)]
_W = {"ge": -20.0, "le": 20.0}


class ReplyWeights(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Log-odds contributions summed into a reply score; see
    :func:`playhouse.scheduling.scoring.reply_probability`."""

    base: Annotated[float, _m("Starting score for any comment (-2.5 is about 8%).", **_W)] = -2.5
    human: Annotated[float, _m("Added when a person wrote the comment.", **_W)] = 1.5
    bot: Annotated[float, _m("Added when another bot wrote the comment.", **_W)] = 0.0
    mention: Annotated[float, _m("Added when the comment says u/<name>.", ge=0.0, le=20.0)] = 8.0
    keyword_positive: Annotated[float, _m("Added per positive keyword (3 at most).", **_W)] = 0.8
    keyword_negative: Annotated[
        float, _m("Added per negative keyword (3 at most); 0 or below.", ge=-20.0, le=0.0)
    ] = -1.5
    question: Annotated[float, _m("Added when the comment asks a question.", **_W)] = 0.7
    own_thread: Annotated[float, _m("Added when this bot started the thread.", **_W)] = 1.2
    depth_penalty: Annotated[
        float, _m("Subtracted per level of comment depth.", ge=0.0, le=10.0)
    ] = 0.35


class Activity(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """When and how much a persona talks."""

    posts_per_day: Annotated[float, _m("New threads started per day.", ge=0.0, le=200.0)]
    active_hours: Annotated[
        tuple[HourStart, HourEnd],
        _m("[start, end) hours UTC when awake; may wrap ([20, 4]); [0, 24] is all day."),
    ] = (0, 24)
    max_age_hours: Annotated[
        float, _m("Comments this old get no reply at all.", gt=0.0, le=336.0)
    ] = 24.0
    per_thread_cap: Annotated[int, _m("Most replies by this bot in one thread.", ge=0)] = 4
    per_hour_cap: Annotated[int, _m("Most replies by this bot per hour.", ge=0)] = 6
    per_room_hour_cap: Annotated[int, _m("Most replies per hour in one room.", ge=0)] = 3
    max_chain: Annotated[int, _m("Most consecutive exchanges with the same other bot.", ge=0)] = 3
    max_bot_comments: Annotated[
        int, _m("Past this many bot comments a thread no longer attracts it.", ge=0)
    ] = 40
    weights: Annotated[ReplyWeights, _m("Reply score weights.")] = msgspec.field(
        default_factory=ReplyWeights
    )

    def __post_init__(self) -> None:
        start, end = self.active_hours
        if start == end:
            raise _invalid("active_hours", "start and end are equal; use [0, 24] for all day")

    def is_active(self, hour_utc: int) -> bool:
        """Whether ``hour_utc`` (reduced modulo 24) falls in ``active_hours``."""
        hour = hour_utc % 24
        start, end = self.active_hours
        if start < end:
            return start <= hour < end
        return hour >= start or hour < end


class Generation(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Sampling parameters for a text model (ignored by image personas)."""

    temperature: Annotated[float, _m("Sampling temperature.", gt=0.0, le=5.0)] = 0.8
    top_k: Annotated[int, _m("Top-k sampling (0 turns it off).", ge=0, le=1000)] = 40
    top_p: Annotated[float, _m("Nucleus sampling mass.", gt=0.0, le=1.0)] = 0.95
    repetition_penalty: Annotated[float, _m("Above 1 discourages repeats.", gt=0.0, le=3.0)] = 1.1
    max_new_tokens: Annotated[int, _m("Longest completion, in tokens.", ge=1, le=1024)] = 96
    max_prompt_tokens: Annotated[
        int, _m("Prompt budget; the oldest ancestors drop first.", ge=16, le=1024)
    ] = 400
    max_attempts: Annotated[int, _m("Samples tried before giving up.", ge=1, le=10)] = 3
    blocked_words: Annotated[
        tuple[Word, ...], _m("An output containing any of these is re-sampled.")
    ] = ()

    def __post_init__(self) -> None:
        if self.max_prompt_tokens + self.max_new_tokens > GPT2_CONTEXT:
            raise _invalid(
                "max_prompt_tokens", f"max_prompt_tokens + max_new_tokens must be <= {GPT2_CONTEXT}"
            )


class ImageParams(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Diffusion parameters; required for image personas, rejected for text ones."""

    steps: Annotated[int, _m("Denoising steps.", ge=1, le=150)] = 25
    guidance: Annotated[float, _m("Classifier-free guidance scale.", ge=0.0, le=30.0)] = 7.5
    width: Annotated[int, _m("Pixels, multiple of 8.", ge=64, le=2048, multiple_of=8)] = 512
    height: Annotated[int, _m("Pixels, multiple of 8.", ge=64, le=2048, multiple_of=8)] = 512
    negative_prompt: Annotated[str, _m("What the picture should not show.")] = ""


class Keywords(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Words that draw the persona into a comment, or keep it away."""

    positive: Annotated[tuple[Word, ...], _m("Words that make a reply more likely.")] = ()
    negative: Annotated[tuple[Word, ...], _m("Words that make a reply less likely.")] = ()

    def hits(self, text: str) -> tuple[int, int]:
        """(positive, negative) keyword occurrences in ``text``, case-insensitive, whole words."""
        return _count_words(text, self.positive), _count_words(text, self.negative)


class Look(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How the persona appears in the web app."""

    colour: Annotated[str, _m("Name colour, #rrggbb.", pattern=COLOUR_PATTERN)] = "#808080"
    avatar: Annotated[str, _m("An emoji or short text.", min_length=1, max_length=8)] = "🤖"


class Persona(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One bot: its model, where it lives, how it behaves and how it looks."""

    name: Annotated[PersonaName, _m("Unique name, used as u/<name>.")]
    display_name: Annotated[str, _m("Name shown in the web app.", min_length=1, max_length=64)]
    kind: Annotated[Literal["text", "image"], _m("text (GPT-2) or image (diffusion).")]
    model: Annotated[str, _m("Local model folder or model hub id.", min_length=1)]
    grammar: Annotated[
        str,
        _m("Tag grammar the model was trained on: playhouse, ssi-bot or ssi-bot-2021 "
           "(prompts, stop strings, parsing and the [generation] defaults)."),
    ] = DEFAULT_GRAMMAR
    rooms: Annotated[tuple[RoomName, ...], _m("Rooms the persona lives in.", min_length=1)]
    description: Annotated[str, _m("One line for owners: what this persona is for.")] = ""
    bio: Annotated[str, _m("Profile text shown to people.")] = ""
    activity: Annotated[Activity, _m("Schedule, reply weights and caps.")]
    generation: Annotated[Generation, _m("Sampling parameters.")] = msgspec.field(
        default_factory=Generation
    )
    image: Annotated[ImageParams | None, _m("Diffusion parameters (image only).")] = None
    keywords: Annotated[Keywords, _m("Positive and negative keywords.")] = msgspec.field(
        default_factory=Keywords
    )
    look: Annotated[Look, _m("Colour and avatar.")] = msgspec.field(default_factory=Look)

    def __post_init__(self) -> None:
        if self.grammar not in GRAMMARS:
            known = ", ".join(f'"{name}"' for name in GRAMMARS)
            raise _invalid("grammar", f"unknown grammar {self.grammar!r} (known: {known})")
        if self.kind == "image" and self.image is None:
            raise _invalid("image", "an image persona needs an [image] table")
        if self.kind == "text" and self.image is not None:
            raise _invalid("image", "only image personas take an [image] table")
        seen: set[str] = set()
        for index, room in enumerate(self.rooms):
            if room.casefold() in seen:
                raise _invalid(f"rooms[{index}]", f"room {room!r} is listed twice")
            seen.add(room.casefold())

    @property
    def variant(self) -> Grammar:
        """The grammar its model speaks: how prompts are built and outputs read."""
        return GRAMMARS[self.grammar]

    def is_active(self, hour_utc: int) -> bool:
        """Whether the persona is awake at ``hour_utc`` (wraps past midnight)."""
        return self.activity.is_active(hour_utc)

    def lives_in(self, room: str) -> bool:
        """Whether ``room`` is one of the persona's rooms (case-insensitive)."""
        return room.casefold() in (r.casefold() for r in self.rooms)


class RoomSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A seed room from ``rooms.toml``."""

    name: Annotated[RoomName, _m("RoomSpec name, shown as r/<name>.")]
    description: Annotated[str, _m("Shown at the top of the room.", max_length=500)] = ""
    public: Annotated[bool, _m("Listed and open to everyone.")] = True
    default_bot: Annotated[
        PersonaName | None, _m("Persona that answers every new post in the room.")
    ] = None


@dataclass(frozen=True, slots=True)
class PersonaError:
    """One problem in one file; ``field`` is a dotted path such as ``activity.weights.bot``."""

    file: str
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Cast:
    """What loading a persona folder produced: the valid parts and every problem."""

    personas: dict[str, Persona] = field(default_factory=dict)
    rooms: dict[str, RoomSpec] = field(default_factory=dict)
    errors: list[PersonaError] = field(default_factory=list)
    warnings: list[PersonaError] = field(default_factory=list)
    """What loaded but should change (deprecated fields)."""

    @property
    def ok(self) -> bool:
        return not self.errors

    def in_room(self, room: str) -> list[Persona]:
        """Personas living in ``room``, by name."""
        return [p for _, p in sorted(self.personas.items()) if p.lives_in(room)]


def _count_words(text: str, words: Iterable[str]) -> int:
    total = 0
    for word in words:
        pattern = r"(?<!\w)" + re.escape(word) + r"(?!\w)"
        total += len(re.findall(pattern, text, flags=re.IGNORECASE))
    return total


_MENTION = re.compile(r"(?<![A-Za-z0-9_])u/([A-Za-z0-9_-]{2,32})")


def mentions(text: str, names: Iterable[str]) -> set[str]:
    """Names from ``names`` that ``text`` mentions as ``u/Name`` (or ``/u/Name``).

    Case-insensitive and whole-word: ``u/coopbot`` mentions ``CoopBot`` but ``u/CoopBots``
    does not. The names are returned as spelled in ``names``.
    """
    by_key = {name.casefold(): name for name in names}
    found: set[str] = set()
    for match in _MENTION.finditer(text):
        token = match.group(1).casefold()
        # A trailing "-" or "_" is punctuation more often than part of a name.
        for candidate in (token, token.rstrip("-_")):
            if candidate in by_key:
                found.add(by_key[candidate])
                break
    return found


def mentioned(text: str) -> list[str]:
    """Every name ``text`` mentions as ``u/name``, casefolded, in the order written (a
    trailing ``-`` or ``_`` dropped, as :func:`mentions` reads it too), each once."""
    names: dict[str, None] = {}
    for match in _MENTION.finditer(text):
        names.setdefault(match.group(1).casefold().rstrip("-_") or match.group(1).casefold())
    return list(names)


def resolve_model(persona: Persona, models_dir: Path) -> str:
    """What to pass to ``from_pretrained`` for ``persona``.

    ``persona.model`` when it names an existing folder (absolute, or relative to the
    working directory); otherwise the offline demo model ``models_dir/demo/<name>`` when it
    has been built; otherwise ``persona.model`` unchanged, taken as a model hub id.
    """
    if Path(persona.model).is_dir():
        return persona.model
    demo = models_dir / "demo" / persona.name
    if demo.exists():
        return str(demo)
    return persona.model


# --- loading ---------------------------------------------------------------------------

_AT = re.compile(r"^(?P<message>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TYPE_NAMES: Final = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
    "null": "nothing",
    "datetime": "a date-time",
    "date": "a date",
    "time": "a time",
}
_PATTERN_HELP: Final = {
    PERSONA_NAME_PATTERN: "2-32 letters, digits, '_' or '-'",
    ROOM_NAME_PATTERN: "3-32 letters, digits or '_'",
    COLOUR_PATTERN: "a colour written #rrggbb",
}


def _type_name(name: str) -> str:
    return _TYPE_NAMES.get(name, name)


def _join(prefix: str, path: str) -> str:
    path = path.removeprefix(".")
    if not prefix:
        return path
    if not path or path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


def _translate(exc: msgspec.ValidationError, prefix: str = "") -> tuple[str, str]:
    """Turn msgspec's ``"Expected `int`, got `str` - at `$.a.b`"`` into (field, reason)."""
    text = str(exc)
    match = _AT.match(text)
    message, path = (match.group("message"), match.group("path") or "") if match else (text, "")
    location = _join(prefix, path)

    if m := re.fullmatch(r"Object contains unknown field `([^`]+)`", message):
        return _join(location, m.group(1)), "unknown field"
    if m := re.fullmatch(r"Object missing required field `([^`]+)`", message):
        return _join(location, m.group(1)), "missing required field"
    if m := re.fullmatch(r"Invalid value for `([^`]+)`: (.*)", message, re.DOTALL):
        return _join(location, m.group(1)), m.group(2)
    if m := re.fullmatch(r"Expected `(\w+)`, got `(\w+)`", message):
        return location, f"expected {_type_name(m.group(1))}, got {_type_name(m.group(2))}"
    if m := re.fullmatch(r"Expected `\w+` matching regex '(.*)'", message, re.DOTALL):
        pattern = m.group(1)
        return location, f"must be {_PATTERN_HELP.get(pattern, 'text matching ' + pattern)}"
    if message == "Expected `str` of length >= 1":
        return location, "must not be empty"
    if m := re.fullmatch(r"Expected `(\w+)` (of length )?([<>=]+ ?[-\d.e+]+|\d+)(.*)", message):
        kind, length, bound, rest = m.groups()
        what = f"{_type_name(kind)} of length" if length else _type_name(kind)
        return location, f"must be {what} {bound}{rest}"
    if m := re.fullmatch(r"Expected `(\w+)` that's (.*)", message):
        return location, f"must be {_type_name(m.group(1))} that is {m.group(2)}"
    if m := re.fullmatch(r"Invalid enum value (.*)", message):
        return location, f"invalid value {m.group(1)}"
    return location, message.replace("`", "")


def _read_toml(path: Path) -> tuple[dict[str, Any] | None, PersonaError | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, PersonaError(path.name, _FILE_FIELD, f"cannot read: {exc}")
    try:
        return tomllib.loads(text), None
    except tomllib.TOMLDecodeError as exc:
        return None, PersonaError(path.name, _SYNTAX_FIELD, f"invalid TOML: {exc}")


def _read_rooms(path: Path) -> tuple[list[tuple[int, RoomSpec]], list[PersonaError], bool]:
    """Valid rooms with their index in the file, the errors, and whether the file was read."""
    data, error = _read_toml(path)
    if data is None:
        return [], [error] if error else [], False
    errors: list[PersonaError] = []
    for key in data:
        if key != "room":
            errors.append(PersonaError(path.name, key, "unknown field (expected [[room]] tables)"))
    entries = data.get("room", [])
    if not isinstance(entries, list):
        errors.append(PersonaError(path.name, "room", "expected [[room]] tables"))
        return [], errors, False
    rooms: list[tuple[int, RoomSpec]] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        prefix = f"room[{index}]"
        try:
            room = msgspec.convert(entry, type=RoomSpec)
        except msgspec.ValidationError as exc:
            errors.append(PersonaError(path.name, *_translate(exc, prefix)))
            continue
        key = room.name.casefold()
        if key in seen:
            errors.append(
                PersonaError(
                    path.name,
                    f"{prefix}.name",
                    f"duplicate room {room.name!r}, see room[{seen[key]}]",
                )
            )
            continue
        seen[key] = index
        rooms.append((index, room))
    return rooms, errors, True


def load_rooms(path: Path) -> dict[str, RoomSpec]:
    """The rooms of a ``rooms.toml``, by name; raises :class:`ConfigError` on any problem."""
    rooms, errors, _ = _read_rooms(path)
    if errors:
        raise ConfigError(_error_message(path, errors))
    return {room.name: room for _, room in rooms}


_GRAMMAR_VERSION: Final = "grammar_version"


def _apply_grammar(file: str, data: dict[str, Any], warnings: list[PersonaError]) -> str:
    """Read the deprecated ``grammar_version`` (1 was the playhouse grammar) and give the
    ``[generation]`` table the defaults of the persona's grammar that it does not set.

    Returns why ``grammar_version`` cannot stand for the grammar, or ``""``."""
    if _GRAMMAR_VERSION in data:
        version = data.pop(_GRAMMAR_VERSION)
        if type(version) is not int or version != 1:
            return (f"deprecated, and {version!r} was never a version (1 was "
                    'grammar = "playhouse"); write grammar = "..." instead')
        if data.get("grammar", DEFAULT_GRAMMAR) != DEFAULT_GRAMMAR:
            return ('deprecated; 1 meant grammar = "playhouse", which contradicts '
                    f"grammar = {data['grammar']!r}: remove it")
        warnings.append(PersonaError(file, _GRAMMAR_VERSION,
                                     'deprecated: write grammar = "playhouse" instead'))
    name = data.get("grammar", DEFAULT_GRAMMAR)
    variant = GRAMMARS.get(name) if isinstance(name, str) else None
    table = data.get("generation", {})
    if variant is not None and isinstance(table, dict):
        defaults = variant.generation_defaults(table)
        if defaults:
            data["generation"] = {**defaults, **table}
    return ""


def _load_persona(
    path: Path,
    known_rooms: dict[str, str] | None,
    names: dict[str, tuple[str, str]],
    warnings: list[PersonaError],
) -> tuple[Persona | None, list[PersonaError]]:
    data, error = _read_toml(path)
    if data is None:
        return None, [error] if error else []
    wrong = _apply_grammar(path.name, data, warnings)
    if wrong:
        return None, [PersonaError(path.name, _GRAMMAR_VERSION, wrong)]
    try:
        persona = msgspec.convert(data, type=Persona)
    except msgspec.ValidationError as exc:
        return None, [PersonaError(path.name, *_translate(exc))]
    errors: list[PersonaError] = []
    earlier = names.get(persona.name.casefold())
    if earlier is not None:
        errors.append(
            PersonaError(
                path.name,
                "name",
                f"duplicate persona name {persona.name!r}, already defined in {earlier[1]}",
            )
        )
    if known_rooms is not None:
        for index, room in enumerate(persona.rooms):
            if room.casefold() not in known_rooms:
                errors.append(
                    PersonaError(
                        path.name, f"rooms[{index}]", f"unknown room {room!r} (not in {ROOMS_FILE})"
                    )
                )
    if errors:
        return None, errors
    if known_rooms is not None:  # spell each room as rooms.toml does
        persona = msgspec.structs.replace(
            persona, rooms=tuple(known_rooms[room.casefold()] for room in persona.rooms)
        )
    return persona, []


def load_cast(directory: Path) -> Cast:
    """Load ``rooms.toml`` and every other ``*.toml`` in ``directory``, file by file.

    When ``rooms.toml`` is absent (or unreadable, which is reported), the rooms are the
    union of the rooms the personas name, public and without a default bot, and no persona
    is checked against a room list. Files are read in name order, so of two files that
    define the same persona name (case-insensitively) the later one is the error. A room
    whose ``default_bot`` is missing or does not live there is reported and kept without
    a default bot.
    """
    if not directory.is_dir():
        return Cast(errors=[PersonaError(str(directory), _FILE_FIELD, "no such directory")])
    errors: list[PersonaError] = []
    rooms_path = directory / ROOMS_FILE
    listed: list[tuple[int, RoomSpec]] = []
    rooms_known = False
    if rooms_path.is_file():
        listed, room_errors, rooms_known = _read_rooms(rooms_path)
        errors.extend(room_errors)
    known_rooms = {room.name.casefold(): room.name for _, room in listed} if rooms_known else None

    personas: dict[str, Persona] = {}
    names: dict[str, tuple[str, str]] = {}
    warnings: list[PersonaError] = []
    for path in sorted(directory.glob("*.toml")):
        if path.name == ROOMS_FILE or not path.is_file():
            continue
        persona, persona_errors = _load_persona(path, known_rooms, names, warnings)
        errors.extend(persona_errors)
        if persona is not None:
            personas[persona.name] = persona
            names[persona.name.casefold()] = (persona.name, path.name)

    if known_rooms is None:
        derived: dict[str, str] = {}
        for persona in personas.values():
            for room_name in persona.rooms:
                derived.setdefault(room_name.casefold(), room_name)
        rooms_by_name = {name: RoomSpec(name=name) for _, name in sorted(derived.items())}
        return _warned(Cast(personas=personas, rooms=rooms_by_name, errors=errors,
                            warnings=warnings))

    rooms: dict[str, RoomSpec] = {}
    for index, room in listed:
        bot = room.default_bot
        if bot is not None:
            persona = personas.get(names.get(bot.casefold(), ("", ""))[0])
            reason = ""
            if persona is None:
                reason = f"no persona named {bot!r} was loaded"
            elif not persona.lives_in(room.name):
                reason = f"{persona.name} does not live in {room.name}"
            if reason:
                errors.append(PersonaError(ROOMS_FILE, f"room[{index}].default_bot", reason))
                room = msgspec.structs.replace(room, default_bot=None)
            elif persona is not None and bot != persona.name:
                room = msgspec.structs.replace(room, default_bot=persona.name)
        rooms[room.name] = room
    return _warned(Cast(personas=personas, rooms=rooms, errors=errors, warnings=warnings))


def _warned(cast: Cast) -> Cast:
    for warning in cast.warnings:
        log.warning("persona.deprecated", file=warning.file, field=warning.field,
                    reason=warning.reason)
    return cast


def _error_message(directory: Path, errors: list[PersonaError]) -> str:
    lines = "\n".join(f"  {error}" for error in errors)
    count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
    return f"{count} in {directory}:\n{lines}"


def load_cast_strict(directory: Path) -> Cast:
    """:func:`load_cast`, raising :class:`ConfigError` listing every error when there is any."""
    cast = load_cast(directory)
    if cast.errors:
        raise ConfigError(_error_message(directory, cast.errors))
    return cast
