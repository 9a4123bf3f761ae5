"""protolm export: a trained model as a Hugging Face model directory (and, when asked, on the hub)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from protolm.cli.tool import open_model
from protolm.config.tools import ExportConfig
from protolm.serving.export import export_model, run_results
from protolm.utils.errors import ConfigError
from protolm.utils.extras import require


def _check_hub(cfg: ExportConfig) -> None:
    """Before any work: push_to_hub needs a repo_id, a token and a reachable hub."""
    from protolm.utils.hub import hub_reachable

    if not cfg.repo_id:
        raise ConfigError("push_to_hub=true needs repo_id=<user or organisation>/<name>")
    if not hub_reachable(cfg.hub_timeout_s):
        raise ConfigError(
            "push_to_hub=true: the Hugging Face hub cannot be reached from here (or HF_HUB_OFFLINE is set); "
            "nothing was uploaded. Export without push_to_hub and upload the directory from a connected machine"
        )
    from huggingface_hub import get_token

    if get_token() is None:
        raise ConfigError("push_to_hub=true: no Hugging Face token; run `hf auth login` or set HF_TOKEN")


def export_command(cfg: ExportConfig) -> dict:
    if cfg.onnx:
        require("onnx", "onnx=true")
    if cfg.push_to_hub:
        _check_hub(cfg)
    clf = open_model(cfg)
    out = export_model(clf, Path(cfg.out), run_results(clf), overwrite=cfg.overwrite)
    console = Console()
    console.print(f"exported {clf.source} to {out}")
    if cfg.onnx:
        from protolm.serving.onnx import export_onnx

        onnx_file = export_onnx(out)
        console.print(f"wrote {onnx_file} ({onnx_file.stat().st_size / 1e6:.1f} MB; run it with onnxruntime)")
    if cfg.push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(cfg.repo_id, private=cfg.private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(out), repo_id=cfg.repo_id, commit_message="Upload protolm model")
        console.print(f"uploaded to {commit.repo_url}")
    return {"output_dir": str(out)}
