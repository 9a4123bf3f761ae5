"""A planted shortcut, for studies of whether a model picks one up and whether an edit removes it:
a meaningless token inserted into a share of one class's examples of the training and selection
splits (``data.shortcut_token``, ``data.shortcut_class``, ``data.shortcut_share``).

The reported split is left clean: a benchmark measures it as it is and with the token inserted into
the *other* classes' examples (:func:`insert_token`), where a model that relies on the token fails.
Which examples get the token, and where in the text, is seeded by ``data.split_seed`` and the split's
name, so every run of a sweep sees the same planted data.
"""

from __future__ import annotations

import random

from protolm.data.split import Split


def insert_token(text: str, token: str, rng: random.Random) -> str:
    """``text`` with ``token`` inserted at a random word boundary."""
    words = text.split(" ")
    at = rng.randint(0, len(words))
    return " ".join(words[:at] + [token] + words[at:])


def plant(split: Split, token: str, class_index: int, share: float, seed: int) -> Split:
    """``split`` with ``token`` inserted into ``share`` of its examples of class ``class_index``."""
    rng = random.Random(f"{seed}:shortcut:{split.name}")
    labels = split.labels
    members = [i for i, label in enumerate(labels) if label == class_index]
    chosen = set(rng.sample(members, round(share * len(members))))
    texts = [insert_token(t, token, rng) if i in chosen else t for i, t in enumerate(split.texts)]
    dataset = split.dataset.remove_columns("text").add_column("text", texts)
    origin = (
        f"{split.origin}, with {token!r} planted in {len(chosen)} of {len(members)} examples of class {class_index}"
    )
    return Split(split.name, origin, dataset, split.truncated, split.fingerprint)
