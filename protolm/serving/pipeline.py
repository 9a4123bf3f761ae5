"""``pipeline("prototype-text-classification", model=<exported dir>)``: the label and score of
text classification, plus why: the prototypes that pushed the prediction (with their nearest
training examples) and the attention over words."""

from __future__ import annotations

from transformers import Pipeline


class PrototypeTextClassificationPipeline(Pipeline):
    """Call with a text, a ``{"text": ..., "text_pair": ...}`` dict, or a list of either; options
    ``top_k`` (prototypes shown, default 3) and ``nearest`` (training examples per prototype, 3)."""

    _load_tokenizer = True
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(self, top_k: int | None = None, nearest: int | None = None, **unused):
        forward = {key: value for key, value in (("top_k", top_k), ("nearest", nearest)) if value is not None}
        return {}, forward, {}

    def preprocess(self, inputs):
        if isinstance(inputs, dict):
            return {"text": inputs["text"], "text_pair": inputs.get("text_pair")}
        return {"text": inputs, "text_pair": None}

    def _forward(self, model_inputs: dict, top_k: int = 3, nearest: int = 3) -> dict:
        from protolm.explanations.describe import explain

        pair = model_inputs["text_pair"]
        max_length = self.model.config.max_seq_length or self.tokenizer.model_max_length
        return explain(
            self.model,
            self.tokenizer,
            [model_inputs["text"]],
            [pair] if pair is not None else None,
            top_k=top_k,
            nearest=nearest,
            max_length=max_length,
        )[0]

    def postprocess(self, explanation: dict) -> dict:
        label, probs = explanation["prediction"], explanation["probs"]
        return {
            "label": label,
            "score": probs[label] if probs else label,
            "prototypes": explanation["prototypes"],
            "tokens": explanation["tokens"],
            "attention": explanation["attention"],
        }


def register_pipeline(task: str) -> None:
    from transformers import AutoModelForSequenceClassification
    from transformers.pipelines import PIPELINE_REGISTRY

    if task not in PIPELINE_REGISTRY.get_supported_tasks():
        PIPELINE_REGISTRY.register_pipeline(
            task, pipeline_class=PrototypeTextClassificationPipeline, pt_model=AutoModelForSequenceClassification
        )
