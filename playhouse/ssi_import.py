"""``playhouse personas import-ssi BOT.ini``: zacc/ssi-bot bot configs into persona files.

An ssi-bot ``ssi-bot.ini`` holds one section per bot (named after its Reddit account) and a
``[DEFAULT]`` section every bot inherits from. Each bot becomes one persona file with the
grammar its model speaks (``use_reply_sense = false`` means ``ssi-bot-2021``) and what has
an equivalent here:

* ``text_model_path`` (older: ``model_path``), relative to the ini's folder → ``model``;
* ``subreddits`` (older: ``subreddit``) and the subreddits of the schedule → ``rooms``;
* ``new_submission_schedule = sub=HOURS,…`` (older: ``post_frequency = HOURS``) →
  ``activity.posts_per_day`` (the sum of 24 / HOURS; playhouse spreads them over the rooms);
* ``positive_keywords`` → ``keywords.positive``; ``negative_keywords`` →
  ``keywords.negative`` with ``weights.keyword_negative = -20`` (ssi-bot never answers such
  a text) and ``generation.blocked_words`` (ssi-bot drops an output holding one);
* the reply probabilities. ssi-bot adds them up as probabilities (``base`` plus boosts,
  then capped) where playhouse adds log-odds, so they are matched where it matters most: a
  person's top-level comment gets ssi-bot's ``base + human`` chance, and each boost makes
  the same difference to that chance as in ssi-bot (``logit(p + boost) - logit(p)``, with
  chances held within 1-99 %); a bot author's comment gets ssi-bot's ``base + bot`` chance.
  The age decay reaches 0 at 24 hours in both.

Everything else is listed as not mapped (flair, NSFW, inbox replies, image posts, toxicity
thresholds, the boosts playhouse has no feature for), and so are the approximations.
ssi-bot's built-in negative keyword list is not copied.
"""

from __future__ import annotations

import configparser
import json
import math
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import msgspec

from playhouse.errors import ConfigError
from playhouse.personas import (
    PERSONA_NAME_PATTERN,
    ROOM_NAME_PATTERN,
    ROOMS_FILE,
    Persona,
    load_rooms,
)

_DEFAULTS: Final = {
    "base_reply_probability": -0.1,
    "comment_depth_reply_penalty": 0.05,
    "positive_keyword_reply_boost": 0.5,
    "human_author_reply_boost": 0.3,
    "bot_author_reply_boost": -0.1,
    "new_submission_reply_boost": 0.1,
    "own_comment_reply_boost": 0.3,
    "interrogative_reply_boost": 0.4,
    "own_submission_reply_boost": 0.5,
    "message_mention_reply_probability": 1.0,
}
"""ssi-bot's own defaults for the reply probabilities (reddit_io.py)."""

_MAPPED: Final = frozenset({
    "text_model_path", "model_path", "subreddits", "subreddit", "new_submission_schedule",
    "post_frequency", "positive_keywords", "negative_keywords", "use_reply_sense",
    "base_reply_probability", "comment_depth_reply_penalty", "positive_keyword_reply_boost",
    "human_author_reply_boost", "bot_author_reply_boost", "interrogative_reply_boost",
    "own_submission_reply_boost", "message_mention_reply_probability",
})
_NOT_MAPPED: Final = {
    "subreddit_flair_id_map": "post flair (playhouse has none)",
    "set_nsfw_flair_on_submissions": "NSFW flair (playhouse has none)",
    "set_nsfw_flair_on_posts": "NSFW flair (playhouse has none)",
    "enable_inbox_replies": "inbox replies (playhouse has no private messages)",
    "image_post_search_prefix": "image posts (a text persona writes text posts)",
    "submission_image_generator": "image posts (a text persona writes text posts)",
    "imgur_client_id": "image posts (a text persona writes text posts)",
    "new_submission_reply_boost": "a boost for new posts (playhouse scores comments)",
    "own_comment_reply_boost": "a boost for answers to the bot's own comment",
    "submission_flair_id": "post flair (playhouse has none)",
}
_P_MIN: Final = 0.01
_P_MAX: Final = 0.99
_KEYWORD_RE: Final = re.compile(r"[\w' -]{1,64}")


@dataclass
class Imported:
    """One bot section turned into a persona file (``text``), or why it could not be."""

    section: str
    name: str = ""
    text: str = ""
    grammar: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


def _list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _logit(p: float) -> float:
    p = min(_P_MAX, max(_P_MIN, p))
    return math.log(p / (1.0 - p))


def _float(section: configparser.SectionProxy, key: str, notes: list[str]) -> float:
    raw = section.get(key)
    if raw is None or not raw.strip():
        return _DEFAULTS[key]
    try:
        return float(raw)
    except ValueError:
        notes.append(f"{key} = {raw!r} is not a number; ssi-bot's default "
                     f"{_DEFAULTS[key]:g} is used")
        return _DEFAULTS[key]


def _weights(section: configparser.SectionProxy, notes: list[str]) -> dict[str, float]:
    def get(key: str) -> float:
        return _float(section, key, notes)

    human = get("base_reply_probability") + get("human_author_reply_boost")
    reference = _logit(human)

    def boost(key: str) -> float:
        return _logit(human + get(key)) - reference

    def bounded(value: float, low: float, high: float) -> float:
        return round(min(high, max(low, value)), 2)

    return {
        "base": bounded(reference, -20.0, 20.0),
        "human": 0.0,
        "bot": bounded(
            _logit(get("base_reply_probability") + get("bot_author_reply_boost")) - reference,
            -20.0, 20.0,
        ),
        "mention": bounded(_logit(get("message_mention_reply_probability")) - reference,
                           0.0, 20.0),
        "keyword_positive": bounded(boost("positive_keyword_reply_boost"), -20.0, 20.0),
        "keyword_negative": -20.0,
        "question": bounded(boost("interrogative_reply_boost"), -20.0, 20.0),
        "own_thread": bounded(boost("own_submission_reply_boost"), -20.0, 20.0),
        "depth_penalty": bounded(
            reference - _logit(human - get("comment_depth_reply_penalty")), 0.0, 10.0
        ),
    }


def _keywords(raw: str, what: str, notes: list[str]) -> list[str]:
    kept: list[str] = []
    # ssi-bot ignores a list of two characters or fewer (an empty '' in the ini).
    for word in _list(raw.lower()) if len(raw.strip()) > 2 else []:
        if _KEYWORD_RE.fullmatch(word):
            kept.append(word)
        else:
            notes.append(f"{what} keyword {word!r} is a regular expression or too long; "
                         "playhouse keywords are plain words: left out")
    return list(dict.fromkeys(kept))


def _schedule(section: configparser.SectionProxy, notes: list[str]) -> tuple[float, list[str]]:
    """(posts per day, subreddits posted to)."""
    raw = (section.get("new_submission_schedule") or "").strip().strip("'\"")
    per_day = 0.0
    subs: list[str] = []
    hours: set[int] = set()
    for entry in _list(raw):
        sub, _, every = entry.partition("=")
        try:
            step = int(every.strip())
        except ValueError:
            notes.append(f"new_submission_schedule entry {entry!r} is not SUB=HOURS: left out")
            continue
        if step > 0:
            per_day += 24.0 / step
            subs.append(sub.strip())
            hours.add(step)
    old = (section.get("post_frequency") or "").strip()
    if not raw and old:
        try:
            step = int(old)
        except ValueError:
            notes.append(f"post_frequency = {old!r} is not a number of hours: left out")
        else:
            if step > 0:
                per_day = 24.0 / step
    if len(hours) > 1:
        notes.append("new_submission_schedule posts to each subreddit on its own clock; "
                     f"playhouse spreads the {per_day:g} posts a day over all the rooms")
    return min(200.0, round(per_day, 3)), subs


def _rooms(
    names: Iterable[str], known: dict[str, str] | None, notes: list[str]
) -> list[str]:
    rooms: list[str] = []
    for name in names:
        if not re.fullmatch(ROOM_NAME_PATTERN, name):
            notes.append(f"r/{name} cannot be a room (3-32 letters, digits or _): left out")
        elif known is not None and name.casefold() not in known:
            notes.append(f"r/{name} is not in {ROOMS_FILE}: add it there")
            rooms.append(name)
        else:
            rooms.append(known[name.casefold()] if known else name)
    return list(dict.fromkeys(rooms))


def import_section(
    ini: Path, section: configparser.SectionProxy, name: str, known: dict[str, str] | None
) -> Imported:
    """One bot's persona file text; ``known`` are the target folder's rooms (lower → name)."""
    result = Imported(section=section.name, name=name)
    notes = result.notes
    if not re.fullmatch(PERSONA_NAME_PATTERN, name):
        result.error = f"{name!r} cannot be a persona name (2-32 letters, digits, _ or -)"
        return result
    model = (section.get("text_model_path") or section.get("model_path") or "").strip()
    model = model.strip("'\"")
    if not model:
        result.error = "no text_model_path: the bot's model folder is not given"
        return result
    model_dir = Path(model) if Path(model).is_absolute() else (ini.parent / model).resolve()
    if not model_dir.is_dir():
        notes.append(f"the model folder {model_dir} does not exist (yet)")
    try:
        reply_sense = section.getboolean("use_reply_sense", True)
    except ValueError:
        notes.append("use_reply_sense is not true or false; ssi-bot's default (true) is used")
        reply_sense = True
    result.grammar = "ssi-bot" if reply_sense else "ssi-bot-2021"

    posts_per_day, scheduled = _schedule(section, notes)
    subs = _list(section.get("subreddits") or section.get("subreddit") or "")
    if not subs:
        notes.append("no subreddits: ssi-bot's default r/test is used")
        subs = ["test"]
    rooms = _rooms([*subs, *scheduled], known, notes)
    if not rooms:
        result.error = "none of the subreddits can be a room"
        return result
    positive = _keywords(section.get("positive_keywords") or "", "positive", notes)
    negative = _keywords(section.get("negative_keywords") or "", "negative", notes)
    if positive or negative:
        notes.append("ssi-bot matches keywords as word starts (kill matches killer); "
                     "playhouse matches whole words and counts up to 3 positive hits")
    image_share = (section.get("image_post_frequency") or "0").strip()
    if image_share not in {"0", "0.0", "", "''"}:
        notes.append(f"image_post_frequency = {image_share}: no image posts here "
                     "(a text persona writes text posts)")
    for key in sorted(set(section.keys()) - _MAPPED - {"image_post_frequency"}):
        if key.endswith("_threshold"):
            notes.append(f"{key}: no toxicity model here; use generation.blocked_words")
        elif key in _NOT_MAPPED:
            notes.append(f"{key}: not mapped, {_NOT_MAPPED[key]}")
        else:
            notes.append(f"{key}: unknown to this import, left out")
    weights = _weights(section, notes)
    notes.append("the interrogative boost counts on any comment here (ssi-bot: only on "
                 "posts and on answers to the bot)")

    lines = [
        f"# Imported from the ssi-bot config {ini.name} [{section.name}] by "
        "`playhouse personas import-ssi`.",
        "",
        f"name = {_toml(name)}",
        f"display_name = {_toml(name)}",
        'kind = "text"',
        f"model = {_toml(str(model_dir))}",
        f"grammar = {_toml(result.grammar)}",
        f"rooms = {_toml(rooms)}",
        f"description = {_toml(f'ssi-bot bot u/{section.name}, imported from {ini.name}.')}",
        "",
        "[activity]",
        f"posts_per_day = {_toml(posts_per_day)}",
        "max_age_hours = 24.0",
        "",
        "[activity.weights]",
        *(f"{key} = {_toml(value)}" for key, value in weights.items()),
        "",
        "[keywords]",
        f"positive = {_toml(positive)}",
        f"negative = {_toml(negative)}",
    ]
    if negative:
        lines += ["", "[generation]", f"blocked_words = {_toml(negative)}"]
    result.text = "\n".join(lines) + "\n"
    try:  # the file must load as it is written (the grammar's defaults fill [generation])
        data = tomllib.loads(result.text)
        msgspec.convert(data, type=Persona)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        result.error, result.text = f"the persona would not load: {exc}", ""
    return result


def import_ini(path: Path, *, name: str | None = None, rooms_file: Path | None = None
               ) -> list[Imported]:
    """Every bot of the ssi-bot config at ``path``; raises :class:`ConfigError` when the file
    cannot be read. ``name`` is the bot of an old single-bot config (only ``[DEFAULT]``)."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise ConfigError(f"cannot read the ssi-bot config {path}: {exc}") from exc
    known = None
    if rooms_file is not None and rooms_file.is_file():
        known = {room.casefold(): room for room in load_rooms(rooms_file)}
    sections = parser.sections()
    if not sections:
        if not name:
            raise ConfigError(f"{path} has no bot section ([USERNAME]); for an old single-bot "
                              "config, pass --name USERNAME")
        return [import_section(path, parser[configparser.DEFAULTSECT], name, known)]
    if name:
        if name not in sections:
            raise ConfigError(f"{path} has no section [{name}] (it has {', '.join(sections)})")
        sections = [name]
    return [import_section(path, parser[section], section, known) for section in sections]
