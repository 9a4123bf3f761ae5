"""Export a trained model as a Hugging Face model directory that anyone can load, query and share.

The directory holds ``config.json`` + ``model.safetensors`` + the tokenizer's files (what
``from_pretrained`` and ``pipeline`` read), ``prototypes.json`` (every prototype's class and its
nearest training examples), a ``README.md`` model card, and the model's code
(``modeling_protolm.py`` and the files it imports) for ``trust_remote_code=True`` without protolm.
It is written into a temporary sibling and renamed into place: an interrupted export leaves no
half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from protolm.errors import ConfigError
from protolm.hf import AUTO_MAP, PROTOTYPES_FILE, copy_remote_code

CARD_FILE = "README.md"


def export_model(
    loaded, out: Path, results: dict | None = None, overwrite: bool = False, card_prototypes: int = 2
) -> Path:
    """Write ``loaded`` (protolm.checkpoint.Loaded) to ``out``; ``results``: the run's results.json."""
    from protolm.api import is_exported

    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        if not is_exported(out):  # never deleted, overwrite or not: it may be anything
            raise ConfigError(f"out={out} is not empty and holds no exported model; choose another out=")
        if not overwrite:
            raise ConfigError(f"out={out} already holds an exported model; choose another out= or pass overwrite=true")
    net = loaded.model.to_transformers().eval()
    net.config.auto_map = dict(AUTO_MAP)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        net.save_pretrained(tmp, safe_serialization=True)
        loaded.tokenizer.save_pretrained(tmp)
        copy_remote_code(tmp)
        if net.prototypes is not None:
            (tmp / PROTOTYPES_FILE).write_text(json.dumps(net.prototypes, indent=1) + "\n", encoding="utf-8")
        (tmp / CARD_FILE).write_text(model_card(net, loaded.config, results, card_prototypes), encoding="utf-8")
        _readable_by_umask(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


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
    shown = {k: v for k, v in results["metrics"].items() if k.startswith(("test/", "val/", "unprojected/test/"))}
    keep = [k for k in shown if not k.endswith(("cohesion", "separation", "loss", "ce", "prototypes_used"))]
    rows = "\n".join(f"| `{k}` | {shown[k]:.4f} |" for k in keep)
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


def model_card(net, config: dict, results: dict | None, card_prototypes: int) -> str:
    """The README.md of an exported model: what it is, how well it did, how to use it."""
    c = net.config
    backbone = config.get("backbone", {})
    labels = "regression (one score)" if c.problem_type == "regression" else ", ".join(c.id2label.values())
    head = (
        f"prototype head: {net.head.num_prototypes} prototypes, {c.head.get('similarity')} similarity"
        if c.head_type == "prototype"
        else "linear head (the fine-tuning baseline)"
    )
    pair_example = ', text_pairs=["..."]' if c.text_pair else ""
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [protolm, prototypes, interpretability]
---

# protolm: {c.task} with {backbone.get("name", c.encoder.get("model_type"))}

A text classifier trained with [protolm](https://github.com/) ({head}). Every prediction can
be explained by the training examples its prototypes stand for and the words it attended to.

- **Task**: `{c.task}`{" (text pairs)" if c.text_pair else ""}; labels: {labels}
- **Encoder**: `{backbone.get("pretrained", c.encoder.get("_name_or_path", "?"))}` ({c.encoder.get("model_type")})
- **Trained at** {c.max_seq_length} tokens; seed {config.get("seed")}

## Results of the training run

{_metrics_table(results)}
## Use it

```python
import protolm  # registers protolm with transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

model = AutoModelForSequenceClassification.from_pretrained("<this directory or repo>")
classify = pipeline("text-classification", model="<this directory or repo>")
explain = pipeline("prototype-text-classification", model="<this directory or repo>")

clf = protolm.load("<this directory or repo>")
clf.predict(["..."]{pair_example})
clf.explain(["..."]{pair_example}, top_k=3)
```

Without protolm installed: `AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=True)`
(the model's code is in `modeling_protolm.py`).

## Some prototypes and their nearest training examples

{_prototype_lines(net, card_prototypes)}
All prototypes are in `{PROTOTYPES_FILE}`.
"""


def run_results(checkpoint: Path) -> dict | None:
    """The results.json of the run a checkpoint belongs to (``<run>/checkpoints/x.ckpt``), if any."""
    for candidate in (checkpoint.parent.parent / "results.json", checkpoint.parent / "results.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    return None
