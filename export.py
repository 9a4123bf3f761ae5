"""Export a trained model for transformers: `python export.py ckpt_path=<run dir | .ckpt> out=<dir>`.

Writes config.json, model.safetensors, the tokenizer, prototypes.json, a README.md model card and
the model's code; `onnx=true` adds model.onnx; `push_to_hub=true repo_id=...` uploads the directory.
"""

from protolm.cli import entry_point

main = entry_point("export", "protolm.cli.export:export_command")

if __name__ == "__main__":
    main()
