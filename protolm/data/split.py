"""A split's examples as an Arrow-backed ``datasets.Dataset``, in a fixed order: what reading,
carving, limiting and encoding (:mod:`protolm.data.build`) pass between them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

GROUP = "group:"  # column-name prefix of the raw values that carves group by


TOKEN_KEYS = ("input_ids", "token_type_ids")


WRITE_BATCH = 10_000  # rows per Arrow record batch while reading a file


@dataclass
class Split:
    """One split's examples, in a fixed order, as an Arrow-backed ``datasets.Dataset``.

    Columns: ``text``, ``pair`` (pair tasks), ``label`` (a class index or a float), ``row`` (where
    the example came from), ``group:<field>`` (raw values carves group by); once encoded,
    ``input_ids`` (and ``token_type_ids``), ``length`` and ``truncated``.
    """

    name: str
    origin: str
    dataset: object  # datasets.Dataset
    truncated: int = 0
    fingerprint: str | None = None  # of the examples as used, for the training role (see examples_digest)

    @classmethod
    def from_lists(cls, name: str, origin: str, texts: list[str], pairs: list[str] | None, labels: list, rows: list):
        """A split of examples held in memory (e.g. built by a test or a caller), not yet encoded."""
        import datasets

        columns = {"text": texts, **({"pair": pairs} if pairs is not None else {}), "label": labels, "row": rows}
        return cls(name, origin, datasets.Dataset.from_dict(columns))

    def __len__(self) -> int:
        return self.dataset.num_rows

    @property
    def texts(self):
        """The first texts: a lazy column (index, slice, iterate, compare with a list)."""
        return self.dataset["text"]

    @property
    def pairs(self):
        return self.dataset["pair"] if "pair" in self.dataset.column_names else None

    @property
    def rows(self):
        return self.dataset["row"]

    @cached_property
    def labels(self) -> list:
        return self.column("label")

    @cached_property
    def lengths(self) -> list[int]:
        """Tokens per example (encoded splits)."""
        return self.column("length")

    def field(self, name: str) -> list[str]:
        """The raw values of a carve's ``group_by`` field, one per example."""
        return self.column(GROUP + name)

    def column(self, name: str) -> list:
        """A whole column as a Python list, converted by Arrow (iterating ``datasets``' lazy column
        converts row by row: about 13 s for a million labels against 0.06 s)."""
        return self.dataset.with_format("arrow")[name].to_pylist()

    def encoding(self, i: int) -> dict:
        """Example ``i``'s token ids: ``input_ids`` (and ``token_type_ids``)."""
        row = self.dataset.select_columns(self.token_keys)[i]
        return {key: row[key] for key in self.token_keys}

    @property
    def token_keys(self) -> list[str]:
        return [key for key in TOKEN_KEYS if key in self.dataset.column_names]

    def subset(self, indices: list[int], name: str | None = None, origin: str | None = None) -> Split:
        return Split(name or self.name, origin or self.origin, self.dataset.select(indices))
