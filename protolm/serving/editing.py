"""Debugging a model through its prototypes: ``editor = Editor(protolm.load(path))``, then
``editor.remove([3])``, ``editor.replace(5, example=120)``, ``editor.add(["a text"], "positive")``,
``editor.forbid(phrases=["zxq"])``, ``editor.allow([4])``; ``editor.save(path)`` writes the edited
model as a new checkpoint (never over another).

Each edit is a round: the edit is checked and made, the last layer retrains on the training split's
cached embeddings (``retrain``: by default fitted to the model's answers before the edit, which keeps
its calibration), and an :class:`~protolm.prototypes.edit_report.EditReport` says what changed on the
selection split. An edit that fails leaves the model exactly as it was. The training split's and the
selection split's pooled embeddings are computed once and reused by later rounds until an edit
changes the encoder or the pooling (``forbid``'s fine-tune).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from protolm.config import ProjectConfig
from protolm.config.tools import ForbidConfig, RetrainConfig
from protolm.data.shortcut import insert_token
from protolm.modeling.saved import require_projection
from protolm.prototypes import edits
from protolm.prototypes.edit_report import EditReport, Scored, flipped_examples, touched_prototypes
from protolm.prototypes.features import Features, encode_split, pooled_of_texts
from protolm.prototypes.last_layer import phase_from_run, train_last_layer
from protolm.prototypes.projection import project
from protolm.prototypes.records import projection_of
from protolm.serving.classifier import Classifier
from protolm.training.debugging import DebuggingPhase, counterfactuals, debugging_fine_tune
from protolm.utils.errors import EditError


@dataclass
class Applied:
    """What an edit did: prototype ids removed (numbered as before the edit), ids changed or added
    (numbered as after), and the answers the last layer then fits when the edit sets them itself."""

    removed: list[int]
    changed: list[int]
    teacher: torch.Tensor | None = None


class Editor:
    """Edit rounds on a loaded prototype model (see the module's docstring)."""

    def __init__(self, clf: Classifier, data: dict | None = None, retrain: RetrainConfig | None = None,
                 max_flipped: int = 20):  # fmt: skip
        require_projection(clf.model, f"model={clf.source}", "edits")
        self.clf, self.net = clf, clf.model
        self.datamodule = clf.datamodule(data)
        self.retrain, self.max_flipped = retrain or RetrainConfig(), max_flipped
        self.encoded: dict[str, Features] = {}

    # ------------------------------------------------------------------ the edits
    def remove(self, ids: list[int]) -> EditReport:
        ids = edits.check_ids(self.net.head, ids, "remove")
        return self._round({"kind": "remove", "prototypes": ids},
                           lambda: Applied(edits.remove(self.net, ids, self.allowed), []))  # fmt: skip

    def replace(self, prototype_id: int, example: int | None = None, example_text: str | None = None) -> EditReport:
        index = example if example is not None else self._find_example(example_text)

        def apply() -> Applied:
            edits.replace(self.net, prototype_id, self.features("train"), self._split(), index, self._top_k())
            return Applied([], [prototype_id])

        if prototype_id in self.allowed:
            raise EditError(f"replace: prototype {prototype_id} is allowed (kept as it is)")
        return self._round({"kind": "replace", "prototype": prototype_id, "example": index}, apply)

    def add(self, texts: list[str], class_name) -> EditReport:
        c = edits.class_index(self.net, class_name)
        vectors = pooled_of_texts(self.net, self.clf.tokenizer, self._checked_texts(texts, "add"), self.clf.max_length)

        def apply() -> Applied:
            ids = edits.add(self.net, vectors, list(texts), c, self.features("train"), self._split(), self._top_k())
            return Applied([], ids)

        return self._round({"kind": "add", "class": c, "texts": list(texts)}, apply)

    def forbid(self, phrases=(), texts=(), settings: ForbidConfig | None = None) -> EditReport:
        settings = settings or ForbidConfig()
        phrases, texts = [p for p in phrases if p.strip()], list(texts)
        if not phrases and not texts:
            raise EditError("forbid: give phrases or example texts of the concept")
        concept = pooled_of_texts(self.net, self.clf.tokenizer, self._checked_texts(phrases + texts, "forbid"),
                                  self.clf.max_length)  # fmt: skip
        carriers = self._carriers(phrases, concept[len(phrases) :], settings.min_share)
        entry = {"kind": "forbid", "phrases": phrases, "texts": texts, "carriers": carriers,
                 "fine_tune": settings.fine_tune, "tune_encoder": settings.tune_encoder}  # fmt: skip
        before = self._accuracy_with_phrase(phrases[0]) if phrases else None
        report = self._round(entry, lambda: self._forbid(phrases, concept, carriers, settings))
        if phrases:
            report.with_phrase = {"before": before, "after": self._accuracy_with_phrase(phrases[0])}
            projection = projection_of(self.net)  # the edit log keeps it too
            projection.edits[-1]["selection_with_phrase"] = report.with_phrase
            self.net.prototypes = projection.to_dict()
        return report

    def allow(self, ids: list[int]) -> dict:
        """Mark prototypes valid: later edits keep them as they are (logged; no retraining)."""
        ids = edits.check_ids(self.net.head, ids, "allow")
        projection = projection_of(self.net)
        for record in projection.prototypes:
            record.allowed = record.allowed or record.prototype_id in ids
        self.net.prototypes = projection.to_dict()
        entry = {"kind": "allow", "prototypes": ids}
        edits.log_edit(self.net, entry)
        return entry

    def save(self, path) -> object:
        """The edited model as a new checkpoint (refused over an existing file)."""
        return self.clf.save(path)

    @property
    def allowed(self) -> set[int]:
        return {p.prototype_id for p in projection_of(self.net).prototypes if p.allowed}

    # ------------------------------------------------------------------ a round
    def _round(self, entry: dict, apply: Callable[[], Applied]) -> EditReport:
        started, val = time.time(), self.features("val")
        before, old_records = Scored.of(self.net, val), projection_of(self.net).to_dict()["prototypes"]
        teacher = self.features("train").logits(self.net.head, self.net.device)
        snapshot = self._snapshot()
        try:
            applied = apply()
            self._retrain(applied.teacher if applied.teacher is not None else teacher)
        except BaseException:
            self._restore(snapshot)
            raise
        after = Scored.of(self.net, self.features("val"))
        names = self.net.config.class_names()
        count, flipped = flipped_examples(before, after, self.datamodule.role_split("val"), self.max_flipped, names)
        figures = {"before": before.figures(val.labels, self.net.head.num_classes)}
        figures["after"] = after.figures(val.labels, self.net.head.num_classes)
        entry = entry | {"removed": applied.removed, "changed": applied.changed, "flipped": count,
                         "selection": figures, "retrain": vars(self.retrain).copy()}  # fmt: skip
        edits.log_edit(self.net, entry)
        touched = touched_prototypes(self.net, old_records, applied.removed, applied.changed)
        seconds = round(time.time() - started, 2)
        return EditReport(entry, figures["before"], figures["after"], len(val), count, flipped, touched, seconds)

    def _retrain(self, teacher: torch.Tensor) -> None:
        if not self.retrain.epochs:
            return
        project_cfg = ProjectConfig(last_layer_epochs=self.retrain.epochs, last_layer_objective=self.retrain.objective)
        phase = phase_from_run((self.clf.training or {}).get("config") or {}, project_cfg)
        phase.keep_zeros = bool((self.net.head.last_layer.weight == 0).any())  # a sparse layer stays as sparse
        train = self.features("train")
        train_last_layer(self.net.head, train, self._split().lengths, phase, teacher)

    def _forbid(self, phrases, concept, carriers: dict[int, float], settings: ForbidConfig) -> Applied:
        removed = edits.remove(self.net, sorted(carriers), self.allowed) if settings.remove and carriers else []
        if not settings.fine_tune:
            return Applied(removed, [])
        kept_vectors = {i: self.net.head.prototypes[i].detach().clone() for i in self.allowed}
        records = projection_of(self.net)
        split, run = self._split(), (self.clf.training or {}).get("config") or {}
        phase = debugging_phase(run, settings)
        data = counterfactuals(list(split.texts), _pairs(split), phrases,
                               [edits.phrase_pattern(p) for p in phrases], phase)  # fmt: skip
        debugging_fine_tune(self.net, self.clf.tokenizer, data, concept, phase, self.clf.max_length)
        self.encoded.clear()  # the pooling (and the encoder, when tuned) changed
        train = self.features("train")
        teacher = train.logits(self.net.head, self.net.device)  # the fine-tuned answers, before projection
        project(self.net, train, split, "replace", records.top_k)
        changed = self._carry_over(records, kept_vectors)
        return Applied(removed, changed, teacher)

    def _carry_over(self, old, kept_vectors: dict[int, torch.Tensor]) -> list[int]:
        """After re-projection: allowed prototypes back on their vectors, the old records' marks and
        edit log kept; the ids of the prototypes now on another example."""
        with torch.no_grad():
            for i, vector in kept_vectors.items():
                self.net.head.prototypes[i] = vector
        new = projection_of(self.net)
        for was, now in zip(old.prototypes, new.prototypes):
            now.allowed, now.added_from, now.original_id = was.allowed, was.added_from, was.original_id
        new.edits = old.edits
        self.net.prototypes = new.to_dict()
        if kept_vectors:
            edits.refresh_records(self.net, self.features("train"), self._split(), old.top_k,
                                  {i: {"allowed": True} for i in kept_vectors})  # fmt: skip
        return [n.prototype_id for w, n in zip(old.prototypes, new.prototypes) if w.replaced_by != n.replaced_by]

    # ------------------------------------------------------------------ helpers
    def _accuracy_with_phrase(self, phrase: str) -> float:
        """Accuracy on the selection split with ``phrase`` inserted into every text (seeded places)."""
        split, rng = self.datamodule.role_split("val"), random.Random(0)
        texts = [insert_token(t, phrase, rng) for t in split.texts]
        pairs = list(split.pairs) if split.pairs is not None else None
        names = self.net.config.class_names()
        found = [names.index(p["prediction"]) for p in self.clf.predict(texts, pairs, batch_size=64)]
        return round(sum(p == y for p, y in zip(found, split.labels)) / max(1, len(found)), 4)

    def features(self, role: str) -> Features:
        """The pooled embeddings of a role's split under the model as it is now (computed once)."""
        if role not in self.encoded:
            self.encoded[role] = encode_split(self.net, self.datamodule, role)
        return self.encoded[role]

    def _split(self):
        return self.datamodule.role_split("train")

    def _top_k(self) -> int:
        return projection_of(self.net).top_k

    def _carriers(self, phrases, concept_texts: torch.Tensor, min_share: float) -> dict[int, float]:
        found = edits.carriers_of_phrases(projection_of(self.net), phrases, min_share) if phrases else {}
        if len(concept_texts):
            found |= edits.carriers_of_texts(self.net, concept_texts)
        return {i: share for i, share in sorted(found.items()) if i not in self.allowed}

    def _find_example(self, text: str | None) -> int:
        texts = self._split().texts
        index = next((i for i, t in enumerate(texts) if t == text), None)
        if index is None:
            raise EditError(f"replace: {text!r} is not a text of the training split (to use a new text, add= it)")
        return index

    def _checked_texts(self, texts: list[str], what: str) -> list[str]:
        for text in texts:
            ids = self.clf.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                raise EditError(f"{what}: {text!r} has no tokens for this model's tokenizer; give a text with words")
        return list(texts)

    def _snapshot(self) -> dict:
        return {"head": copy.deepcopy(self.net.head), "prototypes": copy.deepcopy(self.net.prototypes),
                "encoder": {k: v.clone() for k, v in self.net.encoder.state_dict().items()},
                "encoded": dict(self.encoded)}  # fmt: skip

    def _restore(self, snapshot: dict) -> None:
        self.net.head, self.net.prototypes = snapshot["head"], snapshot["prototypes"]
        self.net.encoder.load_state_dict(snapshot["encoder"])
        self.net.refresh_config()
        self.encoded = snapshot["encoded"]


def debugging_phase(run: dict, settings: ForbidConfig) -> DebuggingPhase:
    """The fine-tune at the training run's rates and batch size, as ``forbid.*`` asks."""
    optim, data = run.get("optim") or {}, run.get("data") or {}
    return DebuggingPhase(
        epochs=settings.epochs,
        head_lr=optim.get("head_lr", 3e-3),
        encoder_lr=optim.get("backbone_lr", 1e-4),
        tune_encoder=settings.tune_encoder,
        batch_size=data.get("batch_size", 16),
        forgetting=settings.forgetting,
        max_examples=settings.max_examples,
        seed=run.get("seed", 0),
    )


def _pairs(split):
    return list(split.pairs) if split.pairs is not None else None
