"""Carving a seeded slice out of a split, as :class:`~protolm.config.task.CarveSpec` says.

A plain carve takes seeded rows. Rows are not always independent, though: MNLI's dev set has
three hypotheses per premise and QNLI's questions and sentences recur, so a by-row carve puts
the same premise on both sides. ``group_by`` keeps related rows together. SST-2's train file
holds every sentence together with its sub-phrases, so a by-row slice is nearly in-sample:
``outermost`` carves whole texts only and ``drop_contained`` drops from the source whatever
a carved text contains. Containment is over whitespace tokens, found with a token trie in
time linear in the texts' n-grams rather than by comparing every text with every other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING

from protolm.config.task import CarveSpec
from protolm.utils.errors import DataError

if TYPE_CHECKING:  # build imports this module
    from protolm.data.split import Split

log = logging.getLogger(__name__)


def carve(source: Split, spec: CarveSpec, split_seed: int) -> tuple[Split, Split]:
    """(the carved slice, what remains of the source), both in the source's order.

    The slice is asked for ``size`` rows, or ``round(fraction * candidates)`` (Python's round, at
    least 1); the candidates are every row, or with ``outermost`` the rows whose text no other
    row's text contains. Rows, or with ``group_by`` whole groups, are taken in a shuffle seeded
    by ``data.split_seed`` and the slice's name; groups are added until the slice holds at least
    the rows asked for, so it may exceed them by less than the size of the last group taken.
    With ``drop_contained`` the remainder loses every row whose text a carved text contains.
    """
    texts = source.column("text") if spec.outermost or spec.drop_contained else None
    trie = token_trie(texts) if texts is not None else None
    candidates = outermost(texts, trie) if spec.outermost else list(range(len(source)))
    n = spec.size if spec.size is not None else max(1, round(spec.fraction * len(candidates)))
    what = f"the {len(candidates)} outermost texts" if spec.outermost else f"the {len(source)}"
    if n >= len(candidates):
        raise DataError(f"task.carve: cannot carve {n} examples out of {what} of {spec.from_split!r}")
    taken = take(source, spec, candidates, n, random.Random(f"{split_seed}:{spec.split}"))
    if len(taken) >= len(candidates):
        raise DataError(
            f"task.carve: cannot carve {n} examples out of {what} of {spec.from_split!r} in whole groups "
            f"by {'+'.join(spec.group_by)} without taking them all"
        )
    dropped = contained_in([texts[i] for i in taken], trie) - set(taken) if spec.drop_contained else set()
    chosen = set(taken) | dropped
    kept = [i for i in range(len(source)) if i not in chosen]
    if not kept:
        raise DataError(f"task.carve: carving {spec.split!r} leaves nothing of {spec.from_split!r}")
    carved = source.subset(taken, spec.split, carved_origin(source, spec, split_seed, taken, what))
    return carved, source.subset(kept, origin=remainder_origin(source, spec, dropped))


def take(source: Split, spec: CarveSpec, candidates: list[int], n: int, rng: random.Random) -> list[int]:
    """The rows carved, in order: ``n`` seeded candidates, or whole seeded groups until there are ``n``."""
    if not spec.group_by:
        candidates = list(candidates)
        rng.shuffle(candidates)  # the same shuffle as before group_by existed: the same slices
        return sorted(candidates[:n])
    groups = row_groups([source.field(name) for name in spec.group_by], candidates)
    order = list(groups)
    rng.shuffle(order)
    taken: list[int] = []
    for group in order:
        if len(taken) >= n:
            break
        taken += group
    return sorted(taken)


def carved_origin(source: Split, spec: CarveSpec, split_seed: int, taken: list[int], what: str) -> str:
    """Where the slice came from, for results.json (a plain carve says what it always said)."""
    how = f" in whole groups by {'+'.join(spec.group_by)}" if spec.group_by else ""
    among = f" of {what}" if spec.outermost else ""
    return f"{len(taken)} rows{among} carved{how} (seed {split_seed}) from {source.origin}"


def remainder_origin(source: Split, spec: CarveSpec, dropped: set[int]) -> str:
    if not spec.drop_contained:
        return source.origin
    log.info(
        "carve %s: dropped %d of %d examples of %s contained in a carved text",
        spec.split,
        len(dropped),
        len(source),
        spec.from_split,
    )
    return f"{source.origin}, without {len(dropped)} contained in texts of {spec.split!r}"


# ---------------------------------------------------------------------------------- groups
def row_groups(columns: list[list[str]], rows: list[int]) -> list[list[int]]:
    """``rows`` joined wherever they share a value, in any column or across columns (connected
    components).

    With two columns (QNLI's question and sentence) a chain q1-s1, q1-s2, q2-s2 is one group,
    since splitting it anywhere would put a question or a sentence on both sides. A value is one
    text wherever it appears: MRPC's and RTE's pairs repeat a sentence as the first text of one
    pair and the second of another, and those pairs are one group too. Empty values join nothing.
    Groups list their rows in order and come in the order of their first row.
    """
    parent = {row: row for row in rows}

    def root(row: int) -> int:
        while parent[row] != row:
            parent[row] = parent[parent[row]]  # path halving keeps the trees shallow
            row = parent[row]
        return row

    first: dict[str, int] = {}  # one table for every column: a text links rows whichever field it is in
    for column in columns:
        for row in rows:
            if column[row] != "":
                parent[root(row)] = root(first.setdefault(column[row], row))
    groups: dict[int, list[int]] = {}
    for row in rows:
        groups.setdefault(root(row), []).append(row)
    return list(groups.values())


# ----------------------------------------------------------------------------- containment
def token_trie(texts: list[str]) -> dict:
    """The texts as a trie over their whitespace tokens; the key None lists the texts ending at a node."""
    root: dict = {}
    for i, text in enumerate(texts):
        node = root
        for token in text.split():
            node = node.setdefault(token, {})
        node.setdefault(None, []).append(i)
    return root


def occurrences(trie: dict, text: str) -> Iterator[int]:
    """The trie's texts that occur in ``text`` as a run of whole tokens (whitespace runs are one gap)."""
    tokens = text.split()
    for start in range(len(tokens)):
        node = trie
        for end in range(start, len(tokens)):
            node = node.get(tokens[end])
            if node is None:
                break
            yield from node.get(None, ())


def contained_in(texts: list[str], trie: dict) -> set[int]:
    """The trie's texts that occur inside any of ``texts``."""
    return {i for text in texts for i in occurrences(trie, text)}


def outermost(texts: list[str], trie: dict) -> list[int]:
    """The texts that no other text contains (a duplicated text is contained in its copy).

    Texts are scanned longest first, and one already found inside another is not scanned: what
    it contains lies inside that other text too, and was found there. On SST-2 this scans the
    ~7,000 sentences, not the 67,000 phrases.
    """
    lengths = [len(text.split()) for text in texts]
    inner: set[int] = set()
    for k in sorted(range(len(texts)), key=lambda i: -lengths[i]):
        if k in inner:
            continue
        for i in occurrences(trie, texts[k]):
            if i != k:
                inner.add(i)
                if lengths[i] == lengths[k]:  # the whole of text k: a copy of it
                    inner.add(k)
    return [i for i in range(len(texts)) if i not in inner]
