"""protolm edit: one edit to a model's prototypes, its retraining and its report; writes edited.ckpt
(the model it read is never touched), edit_report.json, edit_report.md and prototypes.json."""

from __future__ import annotations

from rich.console import Console

from protolm.cli.tool import open_prototype_model, output_dir
from protolm.config.tools import EditToolConfig
from protolm.prototypes.edit_report import markdown
from protolm.serving.editing import Editor
from protolm.utils.files import write_json

WRITES = ("edited.ckpt", "edit_report.json", "edit_report.md", "prototypes.json")


def edit_command(cfg: EditToolConfig) -> dict:
    clf = open_prototype_model(cfg, "edits")
    out = output_dir(cfg, WRITES)
    data = {k: v for k, v in vars(cfg.data).items()}
    editor = Editor(clf, data, cfg.retrain, cfg.max_flipped)
    if cfg.allow:
        editor.allow(cfg.allow)
    report = one_edit(editor, cfg)
    editor.save(out / "edited.ckpt")
    write_json(out / "prototypes.json", clf.model.prototypes)
    console = Console()
    if report is None:
        console.print(f"allowed prototypes {cfg.allow}: later edits keep them as they are")
        return {"output_dir": str(out), "checkpoint": str(out / "edited.ckpt")}
    write_json(out / "edit_report.json", report.to_dict())
    (out / "edit_report.md").write_text(markdown(report), encoding="utf-8")
    before, after = report.before, report.after
    console.print(
        f"{report.edit['kind']}: selection acc {before['acc']:.4f} -> {after['acc']:.4f}, "
        f"ce {before['ce']:.4f} -> {after['ce']:.4f}; {report.flipped_count} of {report.examples} "
        f"predictions flipped ({report.seconds:.1f} s)"
    )
    console.print(f"wrote {out / 'edited.ckpt'} and {out / 'edit_report.md'}")
    return {"output_dir": str(out), "checkpoint": str(out / "edited.ckpt"), "report": report.to_dict()}


def one_edit(editor: Editor, cfg: EditToolConfig):
    """The edit the command asks for (None when it only marks prototypes allowed)."""
    if cfg.remove:
        return editor.remove(cfg.remove)
    if cfg.replace is not None:
        return editor.replace(cfg.replace, cfg.example, cfg.example_text)
    if cfg.add:
        return editor.add(cfg.add, cfg.add_class)
    if cfg.forbid.phrases or cfg.forbid.texts:
        return editor.forbid(cfg.forbid.phrases, cfg.forbid.texts, cfg.forbid)
    return None
