"""Edits a person makes to a model's prototypes: remove, replace, add, and find those a concept
(a phrase, or example texts) stands behind; every edit is checked before anything changes and is
logged in the projection record that travels with the model.

The operations act on the head and its record alone, reading the training split's pooled embeddings
(:class:`~protolm.prototypes.features.Features`); retraining after an edit and the report of what
changed are :mod:`protolm.prototypes.edit_round`'s. ``allow`` marks prototypes an edit must leave as
they are (ProtoPDebug's valid set): a concept search never returns them and removing one is refused.
"""

from __future__ import annotations

import re
import time

import torch

from protolm.prototypes.features import Features
from protolm.prototypes.projection import Neighbours, describe, nearest_examples
from protolm.prototypes.pruning import remove_prototypes
from protolm.prototypes.records import Projection, projection_of
from protolm.utils.errors import EditError


def check_ids(head, ids: list[int], what: str) -> list[int]:
    """``ids`` as ints, each a prototype of ``head``; else a one-line error naming the valid range."""
    ids = [int(i) for i in ids]
    unknown = [i for i in ids if not 0 <= i < head.num_prototypes]
    if unknown:
        raise EditError(f"{what}: no prototype {unknown[0]}; this model has prototypes 0..{head.num_prototypes - 1}")
    return ids


def class_index(net, name) -> int:
    """A class given by name or index, as the model numbers it."""
    names = net.config.class_names() or []
    if isinstance(name, str) and name in names:
        return names.index(name)
    if str(name).lstrip("-").isdigit() and 0 <= int(name) < net.head.num_classes:
        return int(name)
    valid = ", ".join(names) if names else f"0..{net.head.num_classes - 1}"
    raise EditError(f"add: no class {name!r}; this model's classes: {valid}")


def remove(net, ids: list[int], allowed: set[int] = frozenset()) -> list[int]:
    """Remove prototypes ``ids``; refused if it removes an allowed one or a class's last prototype."""
    head = net.head
    ids = check_ids(head, ids, "remove")
    if set(ids) & set(allowed):
        raise EditError(f"remove: prototype {sorted(set(ids) & set(allowed))[0]} is allowed (kept as it is)")
    keep = torch.ones(head.num_prototypes, dtype=torch.bool)
    keep[ids] = False
    left = torch.bincount(head.prototype_class.cpu()[keep], minlength=head.num_classes)
    if left.min() < 1:
        c = int(left.argmin())
        raise EditError(f"remove: that leaves class {class_name(net, c)} without a prototype; keep at least one of it")
    return remove_prototypes(net, keep)


def class_name(net, c: int) -> str:
    names = net.config.class_names()
    return repr(names[c]) if names else str(c)


def replace(net, prototype_id: int, features: Features, split, index: int, top_k: int) -> None:
    """Move prototype ``prototype_id`` onto training example ``index`` (its pooled embedding, as the
    model computes it); the example must be of the prototype's class."""
    head = net.head
    (prototype_id,) = check_ids(head, [prototype_id], "replace")
    if not 0 <= index < len(features):
        raise EditError(f"replace: no training example {index}; the training split has examples 0..{len(features) - 1}")
    c, label = int(head.prototype_class[prototype_id]), int(features.labels[index])
    if label != c:
        raise EditError(
            f"replace: example {index} is of class {class_name(net, label)}, "
            f"prototype {prototype_id} of class {class_name(net, c)}"
        )
    with torch.no_grad():
        head.prototypes[prototype_id] = features.pooled[index].to(head.prototypes)
    refresh_records(net, features, split, top_k, {prototype_id: {"replaced_by": index}})


def add(net, vectors: torch.Tensor, texts: list[str], c: int, features: Features, split, top_k: int) -> list[int]:
    """Append one prototype of class ``c`` per text (``vectors``: their pooled embeddings); their ids."""
    head = net.head
    first = head.num_prototypes
    head.add_prototypes(vectors, c)
    net.refresh_config()
    ids = list(range(first, head.num_prototypes))
    refresh_records(net, features, split, top_k, {i: {"added_from": t} for i, t in zip(ids, texts)})
    return ids


def refresh_records(net, features: Features, split, top_k: int, changes: dict[int, dict]) -> None:
    """The projection record with the nearest examples of the prototypes in ``changes`` recomputed
    and their fields set (the rest as they were)."""
    projection = projection_of(net)
    records = {p.prototype_id: p for p in projection.prototypes}
    neighbours = nearest_examples(net.head, features, top_k)
    fresh = describe(net, split, neighbours, top_k)
    for prototype_id, fields in changes.items():
        record = fresh[prototype_id]
        for key, value in fields.items():
            setattr(record, key, value)
        records[prototype_id] = record
    projection.prototypes = [records[i] for i in range(net.head.num_prototypes)]
    net.prototypes = projection.to_dict()


def phrase_pattern(phrase: str) -> re.Pattern:
    """The phrase as whole words, case-insensitive ("zxq" matches "zxq," but not "zxqs")."""
    return re.compile(rf"(?<!\w){re.escape(phrase.strip())}(?!\w)", re.IGNORECASE)


def carriers_of_phrases(projection: Projection, phrases: list[str], min_share: float) -> dict[int, float]:
    """Prototypes whose nearest examples contain one of ``phrases`` in at least ``min_share`` of
    them: {prototype id: share}."""
    patterns = [phrase_pattern(p) for p in phrases]
    found = {}
    for record in projection.prototypes:
        texts = [" ".join(filter(None, (n.text, n.text_pair))) for n in record.nearest]
        share = sum(any(p.search(t) for p in patterns) for t in texts) / max(1, len(texts))
        if texts and share >= min_share:
            found[record.prototype_id] = round(share, 3)
    return found


@torch.no_grad()
def carriers_of_texts(net, concept: torch.Tensor) -> dict[int, float]:
    """Prototypes to which a concept example (``concept``: pooled embeddings) is as similar as their
    own last-listed nearest training example is, i.e. it would rank among their nearest examples:
    {prototype id: the highest such similarity}."""
    similarities = net.head.similarities(concept.to(net.head.prototypes)).float().cpu()  # N x P
    projection = projection_of(net)
    found = {}
    for record in projection.prototypes:
        if not record.nearest:
            continue
        best = float(similarities[:, record.prototype_id].max())
        if best >= record.nearest[-1].similarity:
            found[record.prototype_id] = round(best, 4)
    return found


def log_edit(net, entry: dict) -> None:
    """Append ``entry`` (with the time) to the model's edit log, in its projection record."""
    projection = projection_of(net)
    projection.edits.append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **entry})
    net.prototypes = projection.to_dict()


def neighbours_of(net, features: Features, top_k: int) -> Neighbours:
    return nearest_examples(net.head, features, top_k)
