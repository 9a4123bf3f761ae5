"""Prototype health: usage, purity, duplicates, dead prototypes, and pruning that keeps the model consistent."""

import json

import pytest
import torch

from protolm.modeling.inference import forward
from protolm.prototypes.features import encode_split
from protolm.prototypes.health import HealthSettings
from protolm.prototypes.health import prototype_health as health_of
from protolm.prototypes.pruning import prune_prototypes
from protolm.prototypes.records import projection_of
from protolm.serving.classifier import load
from tests.support import run_here


def fresh(tiny_run):
    loaded = load(tiny_run / "checkpoints" / "projected.ckpt")
    return loaded, loaded.datamodule()


def prototype_health(model, dm, k):
    """The health report on the training split, as the health stage measures it."""
    train = encode_split(model, dm, "train")
    return health_of(model, train, train, HealthSettings(k=k))


def test_purity_and_usage_match_a_brute_force_count(tiny_run):
    loaded, dm = fresh(tiny_run)
    model, split = loaded.model, dm.role_split("train")
    report = prototype_health(model, dm, k=5)
    sims = torch.empty(len(split), model.head.num_prototypes)
    logits = torch.empty(len(split), model.head.num_classes)
    with torch.no_grad():
        for batch in dm.dataloader("train", shard=False):
            out = forward(model, batch)
            sims[batch["index"]] = out["similarities"]
            logits[batch["index"]] = out["logits"]
    labels = torch.tensor(split.labels)
    nearest_counts = torch.bincount(sims.argmax(1), minlength=model.head.num_prototypes)
    contribution = sims * model.head.last_layer.weight[logits.argmax(1)]
    top_counts = torch.bincount(contribution.argmax(1), minlength=model.head.num_prototypes)
    for row in report.prototypes:
        j = row.prototype_id
        # The tiny run projects by replacement: each prototype sits on its anchor example, which is
        # not counted; purity is over the 5 nearest other examples.
        anchor = projection_of(model).record(j).replaced_by
        assert anchor is not None
        top5 = [i for i in torch.topk(sims[:, j], 6).indices.tolist() if i != anchor][:5]
        assert row.purity == pytest.approx(float((labels[top5] == row.class_index).float().mean()))
        assert row.nearest_count == int(nearest_counts[j]) and row.top_contributor_count == int(top_counts[j])
        assert row.dead == (row.nearest_count == 0 and row.top_contributor_count == 0)
    assert report.usage_examples == len(split)


def pooled_train(model, dm) -> torch.Tensor:
    pooled = torch.empty(len(dm.role_split("train")), model.head.hidden_size)
    with torch.no_grad():
        for batch in dm.dataloader("train", shard=False):
            pooled[batch["index"]] = forward(model, batch)["pooled"].float()
    return pooled


def test_purity_after_replace_does_not_count_the_anchor_example(tiny_run):
    from protolm.modeling.head import similarity_from_pooled

    loaded, dm = fresh(tiny_run)
    model, labels = loaded.model.eval(), dm.role_split("train").labels
    head, pooled = model.head, pooled_train(loaded.model, dm)
    c = int(head.prototype_class[0])

    def nearest_other(a: int) -> int:
        sims = similarity_from_pooled(pooled, pooled[a : a + 1], head.similarity_kind, head.eps)[:, 0]
        sims[a] = -torch.inf
        return int(sims.argmax())

    # An example of prototype 0's class whose nearest other example is of another class: with the
    # prototype replaced onto it, counting the anchor gives purity 1 at k = 1, the truth is 0.
    anchor = next(a for a in range(len(labels)) if labels[a] == c and labels[nearest_other(a)] != c)
    vectors = head.prototypes.detach().clone()
    vectors[0] = pooled[anchor]
    head.set_prototypes(vectors)
    model.prototypes["prototypes"][0]["replaced_by"] = anchor
    report = prototype_health(model, dm, k=1)
    assert report.prototypes[0].purity == 0.0
    assert report.purity_excludes_anchor and report.to_dict()["purity_excludes_anchor"] is True
    # Without a replace record nothing is excluded: the anchor itself is the nearest example.
    model.prototypes = None
    assert prototype_health(model, dm, k=1).prototypes[0].purity == 1.0


def test_duplicates_are_found(tiny_run):
    loaded, dm = fresh(tiny_run)
    head = loaded.model.head
    with torch.no_grad():
        head.prototypes[1] = head.prototypes[0]
    loaded.model.prototypes = None  # fall back to nearest examples of any class
    report = prototype_health(loaded.model, dm, k=3)
    rows = report.prototypes
    assert 1 in rows[0].near_identical_to and 0 in rows[1].near_identical_to
    assert 1 in rows[0].shares_nearest_example_with
    assert report.summary.near_identical >= 2


def test_pruning_removes_impure_prototypes_and_keeps_the_model_consistent(tiny_run):
    loaded, dm = fresh(tiny_run)
    model = loaded.model
    report = prototype_health(model, dm, k=5)
    purity = torch.tensor([r.purity for r in report.prototypes])
    threshold = float(purity.median()) + 1e-6
    keep = purity >= threshold
    for c in range(2):  # a class whose prototypes all fail keeps its purest one
        members = (model.head.prototype_class == c).nonzero().flatten()
        if not keep[members].any():
            keep[members[purity[members].argmax()]] = True
    batch = next(iter(dm.dataloader("test", shard=False)))
    with torch.no_grad():
        out = forward(model, batch)
        kept_logits = out["similarities"][:, keep] @ model.head.last_layer.weight[:, keep].t()
    info = prune_prototypes(model, report, threshold)
    assert info.remaining == int(keep.sum()) == model.head.num_prototypes
    assert set(info.removed) == set((~keep).nonzero().flatten().tolist())
    assert torch.bincount(model.head.prototype_class, minlength=2).min() >= 1
    with torch.no_grad():
        torch.testing.assert_close(forward(model, batch)["logits"], kept_logits)
    assert [p.prototype_id for p in projection_of(model).prototypes] == list(range(model.head.num_prototypes))


def test_health_cli_prunes_into_a_loadable_checkpoint(tiny_run, tmp_path, capsys, monkeypatch):
    ckpt = tiny_run / "checkpoints" / "projected.ckpt"
    result = run_here(
        "protolm",
        "health",
        f"model={ckpt}",
        "prune.enabled=true",
        "prune.k=5",
        "prune.min_purity=0.99",
        "health.plot_max_examples=100",
        f"hydra.run.dir={tmp_path}",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "│ negative │" in result.stdout and "│ positive │" in result.stdout
    )  # classes by name, as explanations show them
    report = json.loads((tmp_path / "health.json").read_text())
    assert (tmp_path / "prototypes_pca.png").stat().st_size > 5_000
    pruned = load(tmp_path / "pruned.ckpt")
    assert pruned.model.head.num_prototypes == report["pruned"]["remaining"] < 8
    assert len(projection_of(pruned.model).prototypes) == pruned.model.head.num_prototypes
    # A pruned model still explains.
    from protolm.explanations.describe import explain

    [e] = explain(pruned.model, pruned.tokenizer, ["fine"])
    assert all(p["prototype_id"] < pruned.model.head.num_prototypes for p in e["prototypes"])


def test_training_writes_health_report_and_plot(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["health"]["summary"]["prototypes"] == 8
    assert (tiny_run / "health.json").exists() and (tiny_run / "prototypes_pca.png").exists()
