"""Export a trained model as a Hugging Face model directory that anyone can load, query and share.

The directory holds ``config.json`` + ``model.safetensors`` + the tokenizer's files (what
``from_pretrained`` and ``pipeline`` read), ``prototypes.json`` (every prototype's class and its
nearest training examples), ``training.json`` (the config of the run that trained it), a
``README.md`` model card (from ``templates/model_card.md``), and the model's code
(``modeling_protolm.py`` and the files it imports) for ``trust_remote_code=True`` without protolm.
It is written into a temporary sibling and renamed into place: an interrupted export leaves no
half-written model behind.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from protolm.modeling.modeling_protolm import PROTOTYPES_FILE, ProtoLMForSequenceClassification
from protolm.modeling.saved import TRAINING_FILE, is_exported
from protolm.serving.figures import shown_metrics
from protolm.utils.errors import ConfigError

CARD_FILE = "README.md"
CARD_TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
MODELING_DIR = Path(__file__).resolve().parents[1] / "modeling"
# The files that let `trust_remote_code=True` load an exported model without protolm installed.
REMOTE_CODE_FILES = ("configuration_protolm.py", "modeling_protolm.py", "head.py")
AUTO_MAP = {
    "AutoConfig": "configuration_protolm.ProtoLMConfig",
    "AutoModelForSequenceClassification": "modeling_protolm.ProtoLMForSequenceClassification",
}


def plain_model(net) -> ProtoLMForSequenceClassification:
    """The model as a plain transformers model: LoRA adapters (peft) merged into a copy of the encoder's
    weights, so that an export loads with ``AutoModel`` alone and runs at the base model's speed."""
    if not hasattr(net.encoder, "merge_and_unload"):
        return net
    plain = ProtoLMForSequenceClassification(net.config, copy.deepcopy(net.encoder).merge_and_unload(), net.head)
    plain.prototypes = net.prototypes
    return plain


def export_model(
    clf, out: Path, results: dict | None = None, overwrite: bool = False, card_prototypes: int = 2
) -> Path:
    """Write the model of ``clf`` (a :class:`~protolm.serving.classifier.Classifier`) to ``out``;
    ``results``: the run's results.json."""
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        if not is_exported(out):  # never deleted, overwrite or not: it may be anything
            raise ConfigError(f"out={out} is not empty and holds no exported model; choose another out=")
        if not overwrite:
            raise ConfigError(f"out={out} already holds an exported model; choose another out= or pass overwrite=true")
    net = plain_model(clf.model).eval()
    net.refresh_config()
    net.config.auto_map = dict(AUTO_MAP)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write(net, clf, tmp, results, card_prototypes)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _write(net, clf, directory: Path, results: dict | None, card_prototypes: int) -> None:
    net.save_pretrained(directory, safe_serialization=True)
    clf.tokenizer.save_pretrained(directory)
    for name in REMOTE_CODE_FILES:
        (directory / name).write_text((MODELING_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    if net.prototypes is not None:
        (directory / PROTOTYPES_FILE).write_text(json.dumps(net.prototypes, indent=1) + "\n", encoding="utf-8")
    if clf.training is not None:
        (directory / TRAINING_FILE).write_text(json.dumps(clf.training, indent=1) + "\n", encoding="utf-8")
    run = (clf.training or {}).get("config") or {}
    (directory / CARD_FILE).write_text(model_card(net, run, results, card_prototypes), encoding="utf-8")
    _readable_by_umask(directory)


def _readable_by_umask(directory: Path) -> None:
    """Files as the user's umask allows (the weights file is written owner-only), so a model
    directory on a shared disk can be read by the colleagues it is shared with."""
    umask = os.umask(0)
    os.umask(umask)
    for path in directory.iterdir():
        path.chmod(0o666 & ~umask)


def _metrics_table(results: dict | None) -> str:
    if not results or not results.get("metrics"):
        return "No results.json was found beside the checkpoint; the run's metrics are not recorded here.\n"
    rows = "\n".join(f"| `{k}` | {v:.4f} |" for k, v in shown_metrics(results["metrics"]).items())
    return f"| metric | value |\n|---|---|\n{rows}\n"


def _prototype_lines(net, per_class: int) -> str:
    records = (net.prototypes or {}).get("prototypes", [])
    if not records:
        return "This model's prototypes were not projected onto training examples.\n"
    lines, shown = [], {}
    for record in records:
        c = record["class"]
        if shown.get(c, 0) >= per_class:
            continue
        shown[c] = shown.get(c, 0) + 1
        name = record.get("class_name") or c
        lines.append(f"- **prototype {record['prototype_id']}** (class `{name}`):")
        for n in record["nearest"][:2]:
            pair = f" / {n['text_pair']!r}" if n.get("text_pair") else ""
            lines.append(f"  - {n['text']!r}{pair} (similarity {n['similarity']:.3f})")
    return "\n".join(lines) + "\n"


def model_card(net, run: dict, results: dict | None, card_prototypes: int) -> str:
    """The README.md of an exported model: what it is, how well it did, how to use it."""
    c, backbone = net.config, run.get("backbone", {})
    head = (
        f"prototype head: {net.head.num_prototypes} prototypes, {c.head.get('similarity')} similarity"
        if c.is_prototype
        else "linear head (the fine-tuning baseline)"
    )
    return CARD_TEMPLATE.read_text(encoding="utf-8").format(
        task=c.task,
        backbone=backbone.get("name", c.encoder.get("model_type")),
        head=head,
        pair_note=" (text pairs)" if c.text_pair else "",
        labels="regression (one score)" if c.regression else ", ".join(c.id2label.values()),
        encoder=backbone.get("pretrained", c.encoder.get("_name_or_path", "?")),
        encoder_type=c.encoder.get("model_type"),
        max_length=c.max_seq_length,
        seed=run.get("seed"),
        metrics=_metrics_table(results),
        pair_example=', text_pairs=["..."]' if c.text_pair else "",
        prototypes=_prototype_lines(net, card_prototypes),
        prototypes_file=PROTOTYPES_FILE,
    )


def run_results(clf) -> dict | None:
    """The results.json of the run the model belongs to, if it was loaded from one."""
    run = clf.run_dir
    if run is not None and (run / "results.json").is_file():
        return json.loads((run / "results.json").read_text(encoding="utf-8"))
    return None
