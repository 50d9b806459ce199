"""Creative content for the synthetic world: captions, hashtags, visual and audio tags drawn
from topics, and users' topic interests.

Glossary: ``R`` creatives; ``U`` users; ``K`` topics (``SyntheticConfig.num_topics``, the first
``K`` of :data:`TOPICS`); a creative's *topic mix* is a probability vector ``[K]`` (a sparse
Dirichlet draw: most creatives are about one or two topics); its *topic* is the mix's largest
entry, the label a content tagger would give it; *relevance* of a creative to a user is the
mix's mass on the user's topic interests, in ``[0, 1]``.

Every word of a caption is a filler word (no topic) or, with the mix's probabilities, a word of
one of the creative's topics; hashtags are topic words; visual and audio tags come from the
topics' own tag lists or from generic ones. The words are plain and safe; the *nightlife* topic
holds a few words (``beer``, ``casino``) that per-region keyword rules commonly block.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["TOPICS", "CreativeContent", "draw_content", "draw_topic_interests", "relevance"]

# topic -> (caption and hashtag words, visual tags, audio tags)
TOPICS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "fitness": (
        ("workout", "gym", "protein", "yoga", "muscle", "cardio", "squat", "stretch", "run"),
        ("dumbbell", "treadmill", "athlete"),
        ("upbeat_edm",),
    ),
    "food": (
        ("recipe", "pizza", "burger", "vegan", "snack", "dessert", "coffee", "spicy", "noodles"),
        ("plate", "kitchen_counter", "closeup_food"),
        ("sizzle",),
    ),
    "travel": (
        ("beach", "flight", "hotel", "island", "hiking", "passport", "sunset", "roadtrip"),
        ("ocean", "mountain", "airplane"),
        ("waves",),
    ),
    "gaming": (
        ("game", "console", "boss", "esports", "controller", "quest", "pixel", "arcade"),
        ("screen_capture", "headset", "neon"),
        ("chiptune",),
    ),
    "beauty": (
        ("skincare", "makeup", "lipstick", "serum", "glow", "nails", "mascara", "fragrance"),
        ("face_closeup", "mirror", "cosmetics"),
        ("soft_pop",),
    ),
    "finance": (
        ("invest", "savings", "budget", "stocks", "loan", "credit", "bank", "retire"),
        ("chart", "coins", "office"),
        ("voiceover_calm",),
    ),
    "pets": (
        ("puppy", "kitten", "dog", "cat", "leash", "treats", "vet", "grooming"),
        ("dog", "cat", "park"),
        ("barking",),
    ),
    "tech": (
        ("phone", "laptop", "gadget", "app", "wireless", "charger", "headphones", "smartwatch"),
        ("device_closeup", "desk", "unboxing"),
        ("synth",),
    ),
    "fashion": (
        ("sneakers", "dress", "jacket", "denim", "outfit", "handbag", "sunglasses", "boots"),
        ("runway", "model", "street"),
        ("runway_beat",),
    ),
    "home": (
        ("sofa", "garden", "decor", "lamp", "cleaning", "furniture", "plants", "mattress"),
        ("living_room", "plants", "bedroom"),
        ("acoustic",),
    ),
    "nightlife": (
        ("party", "cocktail", "beer", "club", "casino", "dance", "bar", "wine"),
        ("crowd", "dance_floor", "bottles"),
        ("house_music",),
    ),
    "kids": (
        ("toys", "lego", "stroller", "diapers", "crayons", "puzzle", "nursery", "cartoon"),
        ("playground", "toys", "child"),
        ("lullaby",),
    ),
    "music": (
        ("concert", "guitar", "playlist", "festival", "vinyl", "karaoke", "piano", "album"),
        ("stage", "instrument", "crowd"),
        ("live_band",),
    ),
    "cars": (
        ("sedan", "suv", "engine", "tires", "electric", "dealership", "turbo", "hybrid"),
        ("car", "road", "garage"),
        ("engine_rev",),
    ),
    "education": (
        ("course", "tutor", "exam", "coding", "certificate", "lesson", "study", "quiz"),
        ("whiteboard", "books", "classroom"),
        ("voiceover_clear",),
    ),
    "sports": (
        ("football", "basketball", "tennis", "goal", "match", "league", "jersey", "stadium"),
        ("field", "ball", "stadium"),
        ("crowd_cheer",),
    ),
}
FILLER = (
    "new", "best", "today", "now", "try", "watch", "love", "your", "the", "with", "for", "get",
    "top", "easy", "quick", "real", "daily", "our", "this", "week",
)  # fmt: skip
GENERIC_VISUAL = ("person", "text_overlay", "outdoor", "indoor", "face", "logo")
GENERIC_AUDIO = ("speech", "music", "silence", "voiceover")
MAX_TOPICS = len(TOPICS)
FILLER_SHARE = 0.35  # of a caption's words
TOPIC_EFFECT = 3.0  # click logit per unit of relevance
MIX_CONCENTRATION = 0.25  # Dirichlet alpha: small makes creatives about few topics
_CHUNK = 1 << 18


@dataclasses.dataclass(frozen=True)
class CreativeContent:
    """Each creative's content; lists are ``(values, offsets [R + 1])`` pairs."""

    topic_mix: np.ndarray  # float64 [R, K], rows sum to 1 (hidden: the truth)
    topic: np.ndarray  # int64 [R]: the largest entry of the mix
    caption: np.ndarray  # str [R]
    hashtags: tuple[np.ndarray, np.ndarray]
    visual_tags: tuple[np.ndarray, np.ndarray]
    audio_tags: tuple[np.ndarray, np.ndarray]


def draw_content(rng: np.random.Generator, num_creatives: int, num_topics: int) -> CreativeContent:
    """Each creative's topic mix, caption (5 to 12 words), 1 to 3 hashtags, 2 to 4 visual tags
    and 1 or 2 audio tags."""
    names = list(TOPICS)[:num_topics]
    words = [TOPICS[n][0] for n in names]
    visual = [TOPICS[n][1] for n in names]
    audio = [TOPICS[n][2] for n in names]
    mix = rng.dirichlet(np.full(num_topics, MIX_CONCENTRATION), num_creatives)
    topic = np.argmax(mix, axis=1).astype(np.int64)

    def topic_draws(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(owner creative, topic from its mix, a uniform) per draw, and offsets [R + 1]."""
        owner = np.repeat(np.arange(num_creatives), counts)
        cumulative = np.cumsum(mix, axis=1)[owner]
        drawn = (cumulative < rng.random(len(owner))[:, None]).sum(axis=1)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return owner, np.minimum(drawn, num_topics - 1), rng.random(len(owner)), offsets

    owner, drawn, pick, _ = topic_draws(rng.integers(5, 13, num_creatives))
    filler = rng.random(len(owner)) < FILLER_SHARE
    filler_word = rng.integers(0, len(FILLER), len(owner))
    caption_words = np.where(filler, np.asarray(FILLER, dtype=object)[filler_word], None)
    for t in range(num_topics):
        here = ~filler & (drawn == t)
        caption_words[here] = np.asarray(words[t], dtype=object)[
            (pick[here] * len(words[t])).astype(np.int64)
        ]
    bounds = np.flatnonzero(np.diff(owner)) + 1
    caption = np.array([" ".join(part) for part in np.split(caption_words, bounds)], dtype=object)

    def tags(low: int, high: int, per_topic: list, generic: tuple, generic_share: float) -> tuple:
        _, drawn, pick, offsets = topic_draws(rng.integers(low, high + 1, num_creatives))
        out = np.empty(len(drawn), dtype=object)
        for t in range(num_topics):
            here = drawn == t
            out[here] = np.asarray(per_topic[t], dtype=object)[
                (pick[here] * len(per_topic[t])).astype(np.int64)
            ]
        if generic:
            plain = rng.random(len(drawn)) < generic_share
            out[plain] = np.asarray(generic, dtype=object)[
                rng.integers(0, len(generic), int(plain.sum()))
            ]
        return out.astype(str), offsets

    return CreativeContent(
        topic_mix=mix,
        topic=topic,
        caption=caption.astype(str),
        hashtags=tags(1, 3, words, (), 0.0),
        visual_tags=tags(2, 4, visual, GENERIC_VISUAL, 0.3),
        audio_tags=tags(1, 2, audio, GENERIC_AUDIO, 0.5),
    )


def draw_topic_interests(
    rng: np.random.Generator, num_users: int, num_topics: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's 1 to 3 distinct topic interests: ``(values int64, offsets [U + 1])``."""
    chosen = np.zeros((num_users, num_topics), dtype=bool)
    counts = rng.integers(1, 4, num_users)
    for k in range(3):  # repeats merge, so some users end with fewer
        topic = rng.integers(0, num_topics, num_users)
        chosen[np.flatnonzero(counts > k), topic[counts > k]] = True
    users, values = np.nonzero(chosen)
    offsets = np.concatenate([[0], np.cumsum(np.bincount(users, minlength=num_users))])
    return values.astype(np.int64), offsets.astype(np.int64)


def relevance(
    topic_mix: np.ndarray,
    interests: tuple[np.ndarray, np.ndarray],
    user: np.ndarray,
    creative: np.ndarray,
) -> np.ndarray:
    """float64 [rows]: the mix of ``creative[i]`` summed over the topic interests of
    ``user[i]`` (each user's interests a boolean row, so no Python loop over rows)."""
    values, offsets = interests
    num_users = len(offsets) - 1
    owner = np.repeat(np.arange(num_users), np.diff(offsets))
    interested = np.zeros((num_users, topic_mix.shape[1]), dtype=bool)
    interested[owner, values] = True
    out = np.empty(len(user), dtype=np.float64)
    for start in range(0, len(user), _CHUNK):  # bounded temporaries on a log of millions
        part = slice(start, start + _CHUNK)
        out[part] = np.einsum("ij,ij->i", interested[user[part]], topic_mix[creative[part]])
    return out
