"""How likely a persona is to answer a comment: the reply score, term by term.

Pure functions of a persona's weights (:class:`~playhouse.personas.ReplyWeights`) and what
the scheduler knows of a comment (:class:`ReplyFeatures`); the policy
(:mod:`playhouse.scheduling.policy`) draws against the probability, and the parts are
logged with every decision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playhouse.personas import Persona

MAX_KEYWORD_HITS: Final = 3
"""Keyword hits beyond this many count no more (one rant should not dominate the score)."""
DECAY_SHAPE: Final = 2.0
"""Steepness of the reply-age decay; 0 would be linear, larger is front-loaded."""


@dataclass(frozen=True, slots=True)
class ReplyFeatures:
    """What the scheduler knows about a comment, from one persona's point of view."""

    author_is_human: bool
    author_is_bot: bool
    mentions_me: bool
    positive_hits: int
    negative_hits: int
    is_question: bool
    my_thread: bool
    depth: int
    """0 for a top-level comment, one more per level below."""
    age_hours: float


def reply_probability(persona: Persona, features: ReplyFeatures) -> tuple[float, dict[str, float]]:
    """Chance that ``persona`` answers a comment, and the score's parts for logging.

    ``score = base + human·[author is human] + bot·[author is a bot] + mention·[mentions me]
    + keyword_positive·min(positive_hits, 3) + keyword_negative·min(negative_hits, 3)
    + question·[is a question] + own_thread·[my thread] - depth_penalty·depth``

    ``probability = sigmoid(score) · decay(age)`` where ``decay`` falls from 1 at age 0 to
    exactly 0 at ``max_age_hours`` along ``(e^(-k·a) - e^(-k)) / (1 - e^(-k))`` with
    ``a = age / max_age_hours`` and ``k = DECAY_SHAPE`` (front-loaded: a comment half as old
    as the limit keeps about 27%). With the default weights a mention scores about +5.5,
    which makes a reply near-certain while the comment is fresh. The parts dict holds each
    term (0.0 when it does not apply), ``score`` and ``decay``.
    """
    w = persona.activity.weights
    parts: dict[str, float] = {
        "base": w.base,
        "human": w.human if features.author_is_human else 0.0,
        "bot": w.bot if features.author_is_bot else 0.0,
        "mention": w.mention if features.mentions_me else 0.0,
        "keyword_positive": w.keyword_positive * _clamp_hits(features.positive_hits),
        "keyword_negative": w.keyword_negative * _clamp_hits(features.negative_hits),
        "question": w.question if features.is_question else 0.0,
        "own_thread": w.own_thread if features.my_thread else 0.0,
        "depth": -w.depth_penalty * max(0, features.depth),
    }
    score = math.fsum(parts.values())
    decay = _age_decay(features.age_hours, persona.activity.max_age_hours)
    parts["score"] = score
    parts["decay"] = decay
    probability = min(1.0, max(0.0, _sigmoid(score) * decay))
    return probability, parts


def _clamp_hits(hits: int) -> int:
    return min(max(0, hits), MAX_KEYWORD_HITS)


def _sigmoid(score: float) -> float:
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    z = math.exp(score)
    return z / (1.0 + z)


def _age_decay(age_hours: float, max_age_hours: float) -> float:
    if not age_hours < max_age_hours:  # also catches NaN
        return 0.0
    a = max(0.0, age_hours) / max_age_hours
    floor = math.exp(-DECAY_SHAPE)
    return max(0.0, (math.exp(-DECAY_SHAPE * a) - floor) / (1.0 - floor))
