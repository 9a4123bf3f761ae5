"""A trained model on disk, and back: one resolver for every way a user names one.

``model=`` (and ``protolm.load``) takes a run directory (the checkpoint it shipped), a checkpoint
file, an exported model directory or a hub id; :func:`locate` says which, :func:`load_saved`
rebuilds the model. A protolm checkpoint stores the model's architecture (its ``ProtoLMConfig``),
the tokenizer's files, the projection record and, as a record only, the training config it was
made with: the model is rebuilt from its architecture alone, so a new config key never changes
the checkpoint format. Checkpoints are read with ``torch.load(weights_only=True)``: only tensors
and plain values are unpickled, so a malicious file cannot run code.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shlex
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from protolm.utils.errors import CheckpointError, ConfigError
from protolm.utils.files import write_atomically

# 3: the model's architecture (ProtoLMConfig) instead of the training config; "model." state keys.
CHECKPOINT_FORMAT = 3
RESULTS = "results.json"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name, not a local path
TRAINING_FILE = "training.json"  # an export's record of the run that trained it

log = logging.getLogger(__name__)


@dataclass
class Located:
    """What a ``model=`` path names: ``kind`` is run, checkpoint, export or hub; ``path`` the file,
    directory or hub id to read; ``run`` the run directory the model belongs to, when known."""

    kind: str
    path: str | Path
    run: Path | None = None


@dataclass
class SavedModel:
    """A trained model as loaded: the transformers model (eval mode), its tokenizer, the training
    config it was made with (None when the source does not record it), and where it came from."""

    net: object  # ProtoLMForSequenceClassification
    tokenizer: object
    training: dict | None
    located: Located
    encoder: dict | None = None  # a LoRA model's adapters record (how to rebuild its encoder)


# ----------------------------------------------------------------------------- the resolver
def is_exported(path: Path) -> bool:
    """Whether ``path`` is a transformers-style protolm model directory."""
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "protolm"
    except (OSError, ValueError):
        return False


def locate(path: str | Path, key: str = "model") -> Located:
    """What ``key=path`` names, with a one-line error (and what to give instead) when it names nothing loadable."""
    local = Path(str(path)).expanduser()
    if local.is_dir() and is_exported(local):
        return Located("export", local)
    if local.is_dir():
        return Located("checkpoint", shipped_checkpoint(local, key), run=local)
    if local.is_file():
        run = local.parent.parent if local.parent.name == "checkpoints" else None
        return Located("checkpoint", local, run=run)
    if HUB_ID.fullmatch(str(path)) and not str(path).endswith(".ckpt"):  # owner/name: a hub repository
        return Located("hub", str(path))
    raise CheckpointError(f"{key}={path}: no such file or directory")


def shipped_checkpoint(run_dir: Path, key: str) -> Path:
    """The checkpoint a finished run shipped (its results.json says which), found in the run
    directory even when the directory was moved or copied since."""
    results = run_dir / RESULTS
    if not results.exists():
        raise CheckpointError(unfinished_message(run_dir, key))
    shipped = json.loads(results.read_text()).get("shipped_checkpoint")
    if not shipped:
        raise CheckpointError(f"{key}={run_dir}: its results.json names no shipped checkpoint")
    path = Path(shipped)
    moved = run_dir / "checkpoints" / path.name
    return path if path.is_file() or not moved.is_file() else moved


def unfinished_message(directory: Path, key: str) -> str:
    """Why ``directory`` is no model to load, and what to do: resume an unfinished run (the exact
    command, when the run recorded how it was started), or load its last training state as it is."""
    last = directory / "checkpoints" / "last.ckpt"
    if last.is_file():
        return (
            f"{key}={directory} is a training run that has not finished (no {RESULTS}): resume it with "
            f"{resume_command(directory)}, or use its last training state as it is: {key}={last}"
        )
    if (directory / "checkpoints").is_dir() or (directory / "run.log").is_file():  # what training writes
        return (
            f"{key}={directory} is a training run that stopped before it saved checkpoints/last.ckpt: "
            "there is nothing in it to load or resume; train again"
        )
    return (
        f"{key}={directory} is neither an exported protolm model (config.json) nor a finished run ({RESULTS}); "
        "give a run directory, a .ckpt file or a directory written by export"
    )


def resume_command(run_dir: Path) -> str:
    """The command that goes on with an unfinished run: the overrides that started it (its oldest
    ``.hydra/<time>/overrides.yaml``) and ``ckpt_path=<the run>``."""
    records = sorted(run_dir.glob(".hydra/*/overrides.yaml"))
    try:
        started_with = yaml.safe_load(records[0].read_text()) if records else None
    except (OSError, yaml.YAMLError):
        started_with = None
    if not isinstance(started_with, list):
        return f"protolm train <the overrides it was started with> ckpt_path={shlex.quote(str(run_dir))}"
    kept = [str(o) for o in started_with if not str(o).startswith(("ckpt_path=", "overwrite="))]
    return " ".join(["protolm train", *map(shlex.quote, kept), f"ckpt_path={shlex.quote(str(run_dir))}"])


def load_saved(path: str | Path, device: str | torch.device = "cpu", key: str = "model") -> SavedModel:
    """The model ``path`` names (see :func:`locate`), in eval mode on ``device``."""
    located = locate(path, key)
    if located.kind in ("export", "hub"):
        return _load_exported(located, device)
    checkpoint = read_checkpoint(located.path)
    record = checkpoint["protolm"]
    check_format(located.path, record)
    net = model_from_record(record, located.path)
    load_state(net, checkpoint["state_dict"], record, located.path)
    net.prototypes = record.get("projection")
    tokenizer = tokenizer_from_files(record["tokenizer_files"])
    return SavedModel(net.eval().to(device), tokenizer, record.get("training"), located, record.get("encoder"))


def _load_exported(located: Located, device) -> SavedModel:
    from transformers import AutoTokenizer
    from transformers.utils import cached_file

    from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification

    source = str(located.path)
    try:
        net = ProtoLMForSequenceClassification.from_pretrained(source)
        # Given the config, the tokenizer does not read config.json itself: its auto_map (the model's
        # own code, for trust_remote_code=True without protolm) would make transformers ask on the terminal.
        tokenizer = AutoTokenizer.from_pretrained(source, config=net.config)
        training_file = cached_file(source, TRAINING_FILE, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError) as err:
        reason = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
        raise CheckpointError(f"cannot load {source} ({reason})") from None
    training = json.loads(Path(training_file).read_text()) if training_file else None
    if net.config.is_prototype and net.prototypes is None:
        _warn_no_prototypes_file(source, net.head.num_prototypes)
    return SavedModel(net.eval().to(device), tokenizer, training, located)


def _warn_no_prototypes_file(source: str, prototypes: int) -> None:
    """An export without prototypes.json still predicts, but its explanations would show no training
    examples with no word of why: say so once, when it loads."""
    from protolm.modeling.modeling_protolm import PROTOTYPES_FILE

    log.warning(
        "%s has no %s, so its %d prototypes have no training examples: explanations show none "
        "(nearest_examples is empty) and protolm explain refuses. Copy %s from where the model was exported, "
        "or export it again from its run (an export of a model never projected has none either: "
        "project it first with protolm project)",
        source,
        PROTOTYPES_FILE,
        prototypes,
        PROTOTYPES_FILE,
    )


# ----------------------------------------------------------------------------- reading
def check_checkpoint_file(path: Path) -> None:
    """A clear error for a missing, truncated or foreign file before torch.load sees it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"checkpoint {path} is not a PyTorch checkpoint (truncated or foreign file)")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(f"checkpoint {path} is unreadable ({err})") from None
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} is corrupt (member {bad} fails its checksum)")


def read_checkpoint(path: str | Path) -> dict:
    """A protolm checkpoint's contents, on the CPU; a clear error for anything else."""
    path = Path(path).expanduser()
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"checkpoint {path} cannot be read safely ({str(err).splitlines()[0][:200]})") from None
    if not isinstance(checkpoint, dict) or "protolm" not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} was not written by protolm (no 'protolm' record)")
    return checkpoint


def check_format(path, record: dict) -> None:
    found = record.get("format")
    if found != CHECKPOINT_FORMAT:
        import protolm

        written_by = record.get("protolm_version", "a version before 0.1.0")
        raise CheckpointError(
            f"checkpoint {path} was written by protolm {written_by} (checkpoint format {found}); this is "
            f"protolm {protolm.__version__}, which reads format {CHECKPOINT_FORMAT} (it stores the model's "
            "architecture, not the training config): load it with the protolm version that wrote it, or train again"
        )


def model_from_record(record: dict, path=None):
    """An untrained model of the recorded architecture (LoRA adapters wrapped as they were trained)."""
    from protolm.modeling.configuration_protolm import ProtoLMConfig
    from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification

    config = ProtoLMConfig.from_dict(record["model"])
    encoder_record = record.get("encoder") or {}
    encoder = None
    if encoder_record.get("backbone"):  # adapters (peft): the same wrapping, then their weights
        encoder = _adapted_encoder(config, encoder_record, path)
    return ProtoLMForSequenceClassification(config, encoder=encoder)


def _adapted_encoder(config, encoder_record: dict, path):
    from protolm.config import BackboneConfig, known_part, section
    from protolm.modeling.backbone import load_encoder, with_lora

    backbone = section(known_part(encoder_record["backbone"], BackboneConfig), BackboneConfig, "backbone")
    if encoder_record.get("weights_from"):  # the file holds the adapters; the frozen weights are read again
        try:
            base = load_encoder(backbone)
        except ConfigError as err:
            raise CheckpointError(
                f"checkpoint {path} holds LoRA adapters and the head; the frozen encoder weights they adapt "
                f"are read from {encoder_record['weights_from']}, which failed: {err}"
            ) from None
    else:
        from transformers import AutoModel

        from protolm.modeling.modeling_protolm import drop_pooler

        base = AutoModel.from_config(config.encoder_config())
        drop_pooler(base)
    return with_lora(base, backbone)


def load_state(net, state: dict, record: dict, where) -> None:
    """The checkpoint's weights into ``net``, every key checked (frozen pretrained weights that a
    LoRA checkpoint leaves out are read from their source instead)."""
    state = {key.removeprefix("model."): value for key, value in state.items()}
    own = set(net.state_dict())
    left_out = frozen_encoder_keys(own) if (record.get("encoder") or {}).get("weights_from") else set()
    missing = sorted(own - set(state) - left_out)
    unexpected = sorted(set(state) - own)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {where} does not match its own architecture "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    net.load_state_dict(state, strict=False)


def frozen_encoder_keys(keys) -> set[str]:
    """The encoder's frozen pretrained weights among a LoRA model's state keys (all but the adapters'):
    what its checkpoints leave out, to be read again from their source."""
    return {key for key in keys if key.startswith("encoder.") and "lora_" not in key}


# ----------------------------------------------------------------------------- writing
def tokenizer_files(tokenizer) -> dict[str, bytes]:
    """The tokenizer's saved files, stored in every checkpoint so it loads without the hub."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}


def tokenizer_from_files(files: dict[str, bytes]):
    """The tokenizer back from :func:`tokenizer_files`' output."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(tmp)


def saved_record(net, tokenizer_files: dict, training: dict | None, encoder: dict | None = None) -> dict:
    """What a checkpoint stores under ``protolm`` besides the weights: plain types only."""
    import protolm

    net.refresh_config()
    return {
        "format": CHECKPOINT_FORMAT,
        "protolm_version": protolm.__version__,
        "model": net.config.to_dict(),
        "tokenizer_files": tokenizer_files,
        "projection": net.prototypes,
        "training": training,
        "encoder": encoder,
    }


def write_checkpoint(saved: SavedModel, path: str | Path) -> Path:
    """A weights-only checkpoint of ``saved`` (written atomically), loadable by :func:`load_saved`
    and by Lightning's ``ckpt_path`` for evaluation."""
    import lightning

    files = tokenizer_files(saved.tokenizer)
    encoder = saved.encoder
    state = saved.net.state_dict()
    if (encoder or {}).get("weights_from"):
        state = {k: v for k, v in state.items() if k not in frozen_encoder_keys(state)}
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in state.items()},
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "protolm": saved_record(saved.net, files, saved.training, encoder),
    }
    return write_atomically(path, lambda tmp: torch.save(checkpoint, tmp))


# ----------------------------------------------------------------------------- what a model has
def require_prototypes(net, source, what: str) -> None:
    """A one-line refusal when ``what`` (e.g. "explanations") needs the prototype head and ``net`` has
    the linear one."""
    if not net.config.is_prototype:
        raise CheckpointError(f"{source} has the linear head: {what} needs a model trained with head=prototype")


def require_projection(net, source, what: str = "explanations") -> None:
    """A one-line refusal when ``net``'s prototypes have no training examples to show."""
    require_prototypes(net, source, what)
    if not net.prototypes:
        raise CheckpointError(
            f"{source} has no prototype projection, so prototypes have no training examples to show. "
            f"Project it first: protolm project model={source} (or train with project.at_end=true)"
        )
