"""The Python API: ``clf = protolm.load(path)``, then ``clf.predict(texts)`` and ``clf.explain(texts)``.

``path`` is a run directory (the checkpoint it shipped), a ``.ckpt`` file, or a directory written
by ``export.py`` (or any directory or hub id holding a protolm ``config.json``). Whatever it is,
the model runs as a ``ProtoLMForSequenceClassification``: the same code and outputs everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from protolm.errors import CheckpointError, DataError
from protolm.explain import explain, prediction_of
from protolm.inference import MODEL_INPUTS, to_device

DEFAULT_MAX_LENGTH = 512
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, not a local path


class Classifier:
    """A trained protolm model and its tokenizer, ready to classify and explain texts.

    ``model``: the ProtoLMForSequenceClassification; ``tokenizer``: its tokenizer; ``source``:
    what it was loaded from. Inputs are truncated to the length the model was trained at.
    """

    def __init__(self, model, tokenizer, source: str | Path | None = None):
        self.model, self.tokenizer, self.source = model.eval(), tokenizer, source
        self.max_length = model.config.max_seq_length or DEFAULT_MAX_LENGTH

    def __repr__(self) -> str:
        c = self.model.config
        return f"Classifier(task={c.task!r}, head={c.head_type!r}, labels={self.labels}, source={str(self.source)!r})"

    @property
    def labels(self) -> list[str] | None:
        """The class names in index order (None for a regression)."""
        if self.regression:
            return None
        return [self.model.config.id2label[c] for c in range(self.model.config.num_labels)]

    @property
    def regression(self) -> bool:
        return self.model.config.problem_type == "regression"

    @property
    def text_pair(self) -> bool:
        """Whether the model classifies pairs of texts (give ``text_pairs=`` then)."""
        return bool(self.model.config.text_pair)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def to(self, device) -> Classifier:
        self.model.to(device)
        return self

    def prototypes(self) -> list[dict]:
        """Every prototype with its class and nearest training examples (empty when not projected)."""
        return list((self.model.prototypes or {}).get("prototypes", []))

    # ------------------------------------------------------------------ predict
    def _check(self, texts: Sequence[str], text_pairs: Sequence[str] | None) -> None:
        if isinstance(texts, str):
            raise DataError("texts must be a list of strings, not one string: predict([text])")
        if self.text_pair and text_pairs is None:
            raise DataError(f"this model ({self.model.config.task}) classifies text pairs: give text_pairs=[...]")
        if not self.text_pair and text_pairs is not None:
            raise DataError(f"this model ({self.model.config.task}) classifies single texts: drop text_pairs")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(text_pairs)} text_pairs: give one pair per text")

    @torch.no_grad()
    def predict_batches(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> Iterator[list[dict]]:
        """:meth:`predict`, one batch at a time (what batch prediction of large files streams)."""
        self._check(texts, text_pairs)
        for start in range(0, len(texts), batch_size):
            args = [list(texts[start : start + batch_size])]
            if text_pairs is not None:
                args.append(list(text_pairs[start : start + batch_size]))
            enc = self.tokenizer(*args, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
            logits = self.model(**to_device(enc, self.device, MODEL_INPUTS)).logits.float().cpu()
            rows = (prediction_of(self.model.config, row)[1:] for row in logits)
            yield [{"prediction": prediction, "probs": probs} for prediction, probs in rows]

    def predict(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> list[dict]:
        """One dict per text: ``prediction`` (the label; the score for a regression) and ``probs``
        ({label: probability}), as in explanations.jsonl."""
        return [row for batch in self.predict_batches(texts, text_pairs, batch_size) for row in batch]

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        top_k: int = 3,
        nearest: int = 3,
        batch_size: int = 16,
    ) -> list[dict]:
        """One explanation per text with the fields of explanations.jsonl: prediction, probs, the
        words and their attention, and the ``top_k`` prototypes that pushed the prediction, each
        with its ``nearest`` training examples."""
        self._check(texts, text_pairs)
        if self.model.config.head_type != "prototype":
            raise DataError("this model has the linear head: it predicts but does not explain (train head=prototype)")
        return explain(
            self.model,
            self.tokenizer,
            list(texts),
            list(text_pairs) if text_pairs is not None else None,
            top_k=top_k,
            nearest=nearest,
            max_length=self.max_length,
            batch_size=batch_size,
        )


def is_exported(path: Path) -> bool:
    """Whether ``path`` is a transformers-style protolm model directory."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "protolm"
    except (OSError, ValueError):
        return False


def load(path: str | Path, device: str | torch.device = "cpu") -> Classifier:
    """A :class:`Classifier` from a run directory, a ``.ckpt`` file, an exported directory or a hub id."""
    from protolm.checkpoint import load as load_checkpoint
    from protolm.checkpoint import shipped_checkpoint

    local = Path(str(path)).expanduser()
    if local.is_dir() and is_exported(local):
        return _load_exported(str(local), device)
    if local.is_dir():
        if not (local / "results.json").exists():
            raise CheckpointError(
                f"{local} is neither an exported protolm model (config.json) nor a finished run (results.json); "
                "give a run directory, a .ckpt file or a directory written by export.py"
            )
        local = shipped_checkpoint(local, "path")
    elif not local.exists():
        if HUB_ID.fullmatch(str(path)) and not str(path).endswith(".ckpt"):  # owner/name: a hub repository
            return _load_exported(str(path), device)
        raise CheckpointError(f"{path}: no such file or directory")
    loaded = load_checkpoint(local, device)
    return Classifier(loaded.model.to_transformers(), loaded.tokenizer, source=local)


def _load_exported(source: str, device) -> Classifier:
    from transformers import AutoTokenizer

    from protolm.hf import ProtoLMForSequenceClassification

    try:
        model = ProtoLMForSequenceClassification.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        raise CheckpointError(f"cannot load {source} ({reason})") from None
    return Classifier(model.to(device), tokenizer, source=source)
