"""``model.onnx`` beside an exported model: logits, prototype similarities and token attention as
outputs, dynamic batch and sequence length; run by onnxruntime without torch or transformers.

The exporter and the onnxscript optimizer it runs log every pass and rewrite (about 150 lines for
an encoder) and warn about what does not concern the user (torchvision absent, axis names merged);
their logging is turned down while exporting, so that an export says one line, and an error still
shows.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

ONNX_FILE = "model.onnx"
ONNX_INLINE_LIMIT = 1_800_000_000  # bytes of weights kept inside model.onnx (protobuf's limit is 2 GiB)
OUTPUTS = ("logits", "similarities", "token_attention")
EXPORT_LOGGERS = ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")


class _Outputs(nn.Module):
    """The model with tensor inputs and a tuple of tensor outputs, as graph export wants it."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        out = self.net(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        if out.similarities is None:  # the linear head: no prototypes
            return out.logits, out.token_attention
        return out.logits, out.similarities, out.token_attention


@contextlib.contextmanager
def quiet_export():
    """The exporter's loggers at ERROR, its advisory warnings and transformers' progress bars off,
    for the block; everything as it was after."""
    from transformers.utils import logging as transformers_logging

    loggers = [logging.getLogger(name) for name in EXPORT_LOGGERS]
    levels = [logger.level for logger in loggers]
    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"# The axis name", category=UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if bars:
            transformers_logging.enable_progress_bar()


def export_onnx(model_dir: Path, opset: int = 18) -> Path:
    """Write ``model_dir/model.onnx`` for the model saved in ``model_dir``; returns its path."""
    from transformers import AutoTokenizer

    from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification

    model_dir = Path(model_dir)
    with quiet_export():
        net = ProtoLMForSequenceClassification.from_pretrained(model_dir).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir, config=net.config)  # see saved._load_exported
        return _export(net, tokenizer, model_dir / ONNX_FILE, opset)


def _export(net, tokenizer, path: Path, opset: int) -> Path:
    pair = ["a second text"] if net.config.text_pair else None
    texts = ["an example sentence to trace", "short"]
    sample = tokenizer(texts, *([pair * 2] if pair else []), padding=True, return_tensors="pt")
    names = tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample)
    outputs = OUTPUTS if net.config.head_type == "prototype" else ("logits", "token_attention")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    torch.onnx.export(
        _Outputs(net).eval(),
        tuple(sample[k] for k in names),
        str(path),
        input_names=list(names),
        output_names=list(outputs),
        dynamic_shapes={name: {0: batch, 1: length} for name in names},
        opset_version=opset,
        dynamo=True,
        verbose=False,
        # One self-contained file, unless the weights pass protobuf's 2 GB limit (large encoders):
        # then they go to model.onnx.data beside it.
        external_data=sum(t.numel() * t.element_size() for t in net.state_dict().values()) > ONNX_INLINE_LIMIT,
    )
    return path
