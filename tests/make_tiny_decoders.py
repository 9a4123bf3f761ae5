"""How protolm/assets/tiny-decoders/ was made: a byte-level BPE tokenizer of 1,000 tokens trained on
SST-2's training sentences, and Llama, Qwen2 and GPT-2 configs of 2 layers, hidden size 64, for the
``tiny-llama``, ``tiny-qwen2`` and ``tiny-gpt2`` test backbones (randomly initialised at run time).

    python tests/make_tiny_decoders.py   # rewrites the folder; needs the SST-2 files (PROTOLM_DATA_DIR)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GPT2Config, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

from protolm.config import default_data_dir

OUT = Path(__file__).resolve().parents[1] / "protolm" / "assets" / "tiny-decoders"
VOCAB, EOS = 1000, "<|endoftext|>"


def sentences() -> list[str]:
    with open(Path(default_data_dir()) / "sst2" / "train.tsv", encoding="utf-8") as f:
        return [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def tokenizer() -> PreTrainedTokenizerFast:
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[EOS], initial_alphabet=alphabet)
    bpe.train_from_iterator(sentences(), trainer)
    # Like GPT-2 and Llama's base tokenizers: an end-of-text token and no padding token (protolm sets
    # the padding token to it, as it does for the real models).
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, unk_token=EOS)


def main() -> None:
    tok = tokenizer()
    tok.save_pretrained(OUT / "tokenizer")
    eos = tok.convert_tokens_to_ids(EOS)
    shape = {"vocab_size": len(tok), "bos_token_id": eos, "eos_token_id": eos}
    llama = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4)
    configs = {
        "llama": LlamaConfig(**shape, **llama, num_key_value_heads=2, max_position_embeddings=512),
        "qwen2": Qwen2Config(**shape, **llama, num_key_value_heads=2, max_position_embeddings=512),
        "gpt2": GPT2Config(**shape, n_embd=64, n_layer=2, n_head=4, n_positions=512),
    }
    for name, config in configs.items():
        (OUT / name).mkdir(parents=True, exist_ok=True)
        config.save_pretrained(OUT / name)
    print(json.dumps({"vocab": len(tok), "out": str(OUT)}))


if __name__ == "__main__":
    main()
