"""Edits to a trained model's prototypes through the Python API and the command: each changes what it
says, retrains, reports, logs itself in the record that travels with the model, and a bad edit is a
one-line error that leaves the model as it was."""

import json

import pytest
import torch

from protolm.prototypes.records import projection_of
from protolm.serving.classifier import load
from protolm.serving.editing import Editor
from protolm.utils.errors import CheckpointError, EditError
from tests.support import TINY, assert_clean_failure, compose_config, run_here


@pytest.fixture
def editor(tiny_run):
    return Editor(load(tiny_run / "checkpoints" / "projected.ckpt"))


def state(net) -> dict:
    return {k: v.clone() for k, v in net.head.state_dict().items()} | {"record": json.dumps(net.prototypes)}


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]) if isinstance(a[k], str) else torch.equal(a[k], b[k]) for k in a)


def test_remove_drops_the_prototypes_retrains_and_reports(editor):
    net = editor.net
    before_ids = [p.nearest[0].text for p in projection_of(net).prototypes]
    report = editor.remove([1, 5])
    assert net.head.num_prototypes == 6 and net.config.head["num_prototypes"] == 6
    left = [p.nearest[0].text for p in projection_of(net).prototypes]
    assert left == [t for i, t in enumerate(before_ids) if i not in (1, 5)]
    assert report.edit["removed"] == [1, 5] and [p["change"] for p in report.prototypes] == ["removed", "removed"]
    assert set(report.before) == set(report.after) == {"acc", "ce", "ece"}
    assert report.examples == len(editor.features("val")) and 0 <= report.flipped_count <= report.examples
    log = projection_of(net).edits
    assert [e["kind"] for e in log] == ["remove"] and log[0]["selection"]["after"] == report.after


def test_replace_moves_a_prototype_onto_the_chosen_example_of_its_class(editor):
    net, train = editor.net, editor.features("train")
    c = int(net.head.prototype_class[2])
    index = int((train.labels == c).nonzero()[-1])
    editor.replace(2, example=index)
    record = projection_of(net).prototypes[2]
    assert record.replaced_by == index and record.nearest[0].index == index
    expected = train.pooled[index]
    assert torch.allclose(net.head.prototypes[2].detach().float().cpu(), expected, atol=1e-6)
    other = int((train.labels != c).nonzero()[0])
    with pytest.raises(EditError, match=f"example {other} is of class"):
        editor.replace(2, example=other)
    with pytest.raises(EditError, match="not a text of the training split"):
        editor.replace(2, example_text="a sentence nobody wrote")


def test_add_appends_prototypes_of_the_class_from_texts(editor):
    net = editor.net
    report = editor.add(["a wonderful, moving film", "superb acting"], "positive")
    names = net.config.class_names()
    assert net.head.num_prototypes == 10 and net.head.prototype_class[-2:].tolist() == [names.index("positive")] * 2
    added = projection_of(net).prototypes[-2:]
    assert [p.added_from for p in added] == ["a wonderful, moving film", "superb acting"]
    assert all(p.nearest and p.class_index == names.index("positive") for p in added)
    assert report.edit["changed"] == [8, 9]
    with pytest.raises(EditError, match="no class 'neutral'.*negative, positive"):
        editor.add(["fine"], "neutral")


def test_forbid_a_phrase_finds_its_carriers_fine_tunes_and_reprojects(editor):
    net = editor.net
    record = projection_of(net)
    # the longest word of the first prototype's nearest example: in at least 1 of its 5 examples
    phrase = max(record.prototypes[0].nearest[0].text.split(), key=len)
    report = editor.forbid(phrases=[phrase], settings=editor_settings(min_share=0.2, remove=False))
    assert report.edit["carriers"][0] >= 0.2 and report.edit["removed"] == []
    assert set(report.with_phrase) == {"before", "after"} and 0 <= report.with_phrase["after"] <= 1
    projection = projection_of(net)
    assert projection.edits[-1]["kind"] == "forbid"
    # after the fine-tune every prototype sits on a training example again
    train = editor.features("train")
    for p in projection.prototypes:
        assert torch.allclose(
            net.head.prototypes[p.prototype_id].detach().float().cpu(), train.pooled[p.replaced_by], atol=1e-5
        )


def editor_settings(**changes):
    from protolm.config.tools import ForbidConfig

    return ForbidConfig(**({"epochs": 1, "max_examples": 40} | changes))


def test_allowed_prototypes_are_kept_by_later_edits(editor):
    editor.allow([3])
    with pytest.raises(EditError, match="prototype 3 is allowed"):
        editor.remove([3])
    assert projection_of(editor.net).prototypes[3].allowed


def test_a_bad_edit_changes_nothing(editor):
    net = editor.net
    start = state(net)
    with pytest.raises(EditError, match=r"no prototype 99; this model has prototypes 0\.\.7"):
        editor.remove([99])
    classes = net.head.prototype_class.tolist()
    with pytest.raises(EditError, match="without a prototype"):
        editor.remove([i for i, c in enumerate(classes) if c == 0])
    with pytest.raises(EditError, match="has no tokens"):
        editor.add(["   "], "positive")
    assert same_state(start, state(net))


def test_a_linear_model_cannot_be_edited(tmp_path):
    from protolm.training.train import train

    results = train(compose_config(tmp_path / "run", TINY + ["head=linear", "trainer.max_epochs=1"]))
    with pytest.raises(CheckpointError, match="linear head: edits"):
        Editor(load(results["shipped_checkpoint"]))


def test_the_edit_command_writes_a_new_checkpoint_and_report_and_refuses_two_edits(
    tiny_run, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "edit"
    done = run_here("protolm", "edit", f"model={tiny_run}", "remove=[0]", f"hydra.run.dir={out}",
                    capsys=capsys, monkeypatch=monkeypatch)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "edit_report.json").read_text())
    assert report["edit"]["kind"] == "remove" and (out / "edit_report.md").exists()
    edited = load(out / "edited.ckpt")
    assert edited.model.head.num_prototypes == 7 and projection_of(edited.model).edits[0]["removed"] == [0]
    assert load(tiny_run / "checkpoints" / "projected.ckpt").model.head.num_prototypes == 8  # untouched
    two = run_here("protolm", "edit", f"model={tiny_run}", "remove=[0]", "add=[x]", "add_class=positive",
                   f"hydra.run.dir={tmp_path / 'two'}", capsys=capsys, monkeypatch=monkeypatch)  # fmt: skip
    assert_clean_failure(two, "give one of remove=")
    assert not (tmp_path / "two").exists()
