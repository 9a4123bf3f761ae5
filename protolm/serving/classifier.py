"""The trained model as users and commands hold it: ``clf = protolm.load(path)``, then
``clf.predict(texts)`` and ``clf.explain(texts)``.

``path`` is whatever ``model=`` takes (:func:`protolm.modeling.saved.locate`): a run directory (the
checkpoint it shipped), a ``.ckpt`` file, a directory written by export, or a hub id. Whatever it
is, the model runs as a ``ProtoLMForSequenceClassification``: the same code and outputs everywhere.
Every command (explain, project, health, evaluate, export, predict, serve, edit) and the server
load a :class:`Classifier` through :func:`load`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from protolm.explanations.describe import explain, prediction_of
from protolm.explanations.rationales import DEFAULT_RATIONALE
from protolm.modeling.inference import MODEL_INPUTS, encode_texts, to_device, truncated_rows
from protolm.modeling.saved import SavedModel, load_saved, require_prototypes, write_checkpoint
from protolm.utils.errors import CheckpointError, DataError

DEFAULT_MAX_LENGTH = 512


class Classifier:
    """A trained protolm model and its tokenizer, ready to classify and explain texts.

    ``model``: the ProtoLMForSequenceClassification; ``tokenizer``: its tokenizer; ``source``:
    what it was loaded from; ``training``: the config of the run that trained it (None for a
    source that does not record it). Inputs are truncated to the length the model was trained at.
    """

    def __init__(self, saved: SavedModel):
        self.saved = saved
        self.model, self.tokenizer = saved.net.eval(), saved.tokenizer
        self.max_length = self.model.config.max_seq_length or DEFAULT_MAX_LENGTH

    def __repr__(self) -> str:
        c = self.model.config
        return f"Classifier(task={c.task!r}, head={c.head_type!r}, labels={self.labels}, source={self.source!r})"

    @property
    def source(self) -> str:
        return str(self.saved.located.path)

    @property
    def run_dir(self) -> Path | None:
        """The run directory the model belongs to, when it was loaded from one (or from its checkpoints/)."""
        return self.saved.located.run

    @property
    def training(self) -> dict | None:
        return self.saved.training

    @property
    def labels(self) -> list[str] | None:
        """The class names in index order (None for a regression)."""
        return self.model.config.class_names()

    @property
    def regression(self) -> bool:
        return self.model.config.regression

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

    def save(self, path: str | Path) -> Path:
        """A checkpoint of the model as it is now (loadable by :func:`load`, never over an existing file)."""
        path = Path(path)
        if path.exists():
            raise CheckpointError(f"{path} already exists: a model is never written over another")
        return write_checkpoint(self.saved, path)

    def datamodule(self, data: dict | None = None):
        """The data module of the run that trained the model (``data``: data.* values to change,
        e.g. ``{"data_dir": ...}`` where the task files moved)."""
        from protolm.config import DataConfig, TaskSpec, known_part, section
        from protolm.data.datamodule import TaskDataModule

        run = self.training and self.training.get("config")
        if not run:
            raise CheckpointError(
                f"{self.source} does not record the run that trained it, so its training data cannot be found: "
                "use the run directory or a checkpoint of it (exports made by protolm 0.1 record it in training.json)"
            )
        values = known_part(run["data"], DataConfig) | {k: v for k, v in (data or {}).items() if v is not None}
        task = TaskSpec.from_config(run["task"])
        return TaskDataModule(task, self.tokenizer, section(values, DataConfig, "data"), seed=run.get("seed", 0))

    # ------------------------------------------------------------------ predict
    def check_inputs(self, texts: Sequence[str], text_pairs: Sequence[str] | None = None) -> None:
        """A one-line :class:`DataError` for inputs this model cannot take: one string instead of a
        list, a missing or extra ``text_pairs``, and empty or whitespace-only texts (what :meth:`predict`
        and :meth:`explain` refuse; a server checks each request with it before batching requests)."""
        if isinstance(texts, str):
            raise DataError("texts must be a list of strings, not one string: predict([text])")
        if self.text_pair and text_pairs is None:
            raise DataError(f"this model ({self.model.config.task}) classifies text pairs: give text_pairs=[...]")
        if not self.text_pair and text_pairs is not None:
            raise DataError(f"this model ({self.model.config.task}) classifies single texts: drop text_pairs")
        if text_pairs is not None and len(text_pairs) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(text_pairs)} text_pairs: give one pair per text")
        check_texts(texts, "texts")
        check_texts(text_pairs or [], "text_pairs")

    @torch.no_grad()
    def predict_batches(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> Iterator[list[dict]]:
        """:meth:`predict`, one batch at a time (what batch prediction of large files streams)."""
        self.check_inputs(texts, text_pairs)
        for start in range(0, len(texts), batch_size):
            pairs = list(text_pairs[start : start + batch_size]) if text_pairs is not None else None
            enc = encode_texts(self.tokenizer, list(texts[start : start + batch_size]), pairs, self.max_length)
            logits = self.model(**to_device(enc, self.device, MODEL_INPUTS)).logits.float().cpu()
            rows = (prediction_of(self.model.config, row)[1:] for row in logits)
            yield [
                {"prediction": prediction, "probs": probs, "truncated": truncated}
                for (prediction, probs), truncated in zip(rows, truncated_rows(enc))
            ]

    def predict(
        self, texts: Sequence[str], text_pairs: Sequence[str] | None = None, batch_size: int = 32
    ) -> list[dict]:
        """One dict per text: ``prediction`` (the label; the score for a regression), ``probs``
        ({label: probability}) and ``truncated`` (whether the text was longer than the model reads),
        as in explanations.jsonl. Empty or whitespace-only texts are refused (:meth:`check_inputs`)."""
        return [row for batch in self.predict_batches(texts, text_pairs, batch_size) for row in batch]

    # ------------------------------------------------------------------ explain
    def explain(
        self,
        texts: Sequence[str],
        text_pairs: Sequence[str] | None = None,
        top_k: int = 3,
        nearest: int = 3,
        batch_size: int = 16,
        rationale: str = DEFAULT_RATIONALE,
    ) -> list[dict]:
        """One explanation per text with the fields of explanations.jsonl: prediction, probs, the
        words with their ``importance`` by ``rationale`` (``greedy_gates`` by default; any name of
        :data:`protolm.explanations.rationales.RATIONALES`) and their pooling ``attention``, and the
        ``top_k`` prototypes that pushed the prediction, each with its ``nearest`` training examples."""
        self.check_inputs(texts, text_pairs)
        require_prototypes(self.model, f"model={self.source}", "explanations")
        return explain(
            self.model,
            self.tokenizer,
            list(texts),
            list(text_pairs) if text_pairs is not None else None,
            top_k=top_k,
            nearest=nearest,
            max_length=self.max_length,
            batch_size=batch_size,
            rationale=rationale,
        )


def check_texts(texts: Sequence[str], name: str = "texts") -> None:
    """A one-line :class:`DataError` naming the first text that is not a string, or is empty or only
    whitespace: a model given no words still answers, with a confident-looking prediction that
    means nothing."""
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"{name}[{index}] is {type(text).__name__}, not a string")
        if not text.strip():
            raise DataError(
                f"{name}[{index}] is empty or only whitespace: there is nothing to classify (drop it, or give its text)"
            )


def load(path: str | Path, device: str | torch.device = "cpu", key: str = "model") -> Classifier:
    """A :class:`Classifier` from a run directory, a ``.ckpt`` file, an exported directory or a hub id."""
    return Classifier(load_saved(path, device, key))
