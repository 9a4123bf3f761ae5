"""``model.onnx`` beside an exported model: logits, prototype similarities and token attention as
outputs, dynamic batch and sequence length; run by onnxruntime without torch or transformers."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ONNX_FILE = "model.onnx"
ONNX_INLINE_LIMIT = 1_800_000_000  # bytes of weights kept inside model.onnx (protobuf's limit is 2 GiB)
OUTPUTS = ("logits", "similarities", "token_attention")


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


def export_onnx(model_dir: Path, opset: int = 18) -> Path:
    """Write ``model_dir/model.onnx`` for the model saved in ``model_dir``; returns its path."""
    from transformers import AutoTokenizer

    from protolm.modeling.modeling_protolm import ProtoLMForSequenceClassification

    model_dir = Path(model_dir)
    net = ProtoLMForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    pair = ["a second text"] if net.config.text_pair else None
    texts = ["an example sentence to trace", "short"]
    sample = tokenizer(texts, *([pair * 2] if pair else []), padding=True, return_tensors="pt")
    names = tuple(k for k in ("input_ids", "attention_mask", "token_type_ids") if k in sample)
    outputs = OUTPUTS if net.config.head_type == "prototype" else ("logits", "token_attention")
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    path = model_dir / ONNX_FILE
    torch.onnx.export(
        _Outputs(net),
        tuple(sample[k] for k in names),
        str(path),
        input_names=list(names),
        output_names=list(outputs),
        dynamic_shapes={name: {0: batch, 1: length} for name in names},
        opset_version=opset,
        dynamo=True,
        # One self-contained file, unless the weights pass protobuf's 2 GB limit (large encoders):
        # then they go to model.onnx.data beside it.
        external_data=sum(t.numel() * t.element_size() for t in net.state_dict().values()) > ONNX_INLINE_LIMIT,
    )
    return path
