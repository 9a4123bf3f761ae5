"""Projection ties prototypes to real training examples of their own class, streaming, exactly."""

import dataclasses
import json

import torch

from protolm.modeling.inference import forward
from protolm.prototypes.features import Features, encode_split
from protolm.prototypes.projection import Neighbours, StreamingTopK, assign_distinct, nearest_examples, project
from protolm.prototypes.records import projection_of
from protolm.serving.classifier import load


def brute_force(model, dm, restrict=True):
    """Similarities of every training example to every prototype, all in memory."""
    sims, labels = [], []
    split = dm.role_split("train")
    with torch.no_grad():
        for batch in dm.dataloader("train", shard=False):
            out = forward(model, batch)["similarities"]
            order = batch["index"].tolist()
            sims.append((order, out))
    full = torch.empty(len(split), model.head.num_prototypes)
    for order, out in sims:
        full[order] = out
    if restrict:
        labels = torch.tensor(split.labels)
        full = full.masked_fill(labels[:, None] != model.head.prototype_class[None, :], -torch.inf)
    return full


def test_streaming_top_k_equals_brute_force(tiny_run):
    loaded = load(tiny_run / "checkpoints" / "last.ckpt")
    dm = loaded.datamodule()
    full = brute_force(loaded.model, dm)
    streamed = nearest_examples(loaded.model.head, encode_split(loaded.model, dm, "train"), m=4)
    expected = torch.topk(full.t(), 4, dim=1)
    torch.testing.assert_close(streamed.scores, expected.values)
    assert torch.equal(streamed.indices, expected.indices)


def test_streaming_state_is_bounded_by_prototypes_times_m():
    topk = StreamingTopK(num_prototypes=3, m=2, device="cpu")
    g = torch.Generator().manual_seed(0)
    everything = []
    for step in range(500):  # 16,000 examples stream through a 3 x 2 state
        sims = torch.rand(32, 3, generator=g)
        everything.append(sims)
        topk.update(sims, torch.arange(step * 32, step * 32 + 32))
        assert topk.scores.shape == (3, 2) and topk.indices.shape == (3, 2)
    best = torch.topk(torch.cat(everything).t(), 2, dim=1)
    assert torch.equal(topk.indices, best.indices)


def sits_on(similarity: torch.Tensor, head) -> bool:
    """The example's pooled embedding coincides with the prototype: the head's largest similarity
    (cosine 1; inv_l2 1/eps, i.e. distance 1/sim - eps below 1e-5)."""
    if head.similarity_kind == "cosine":
        return 1 - float(similarity) < 1e-5
    return 1 / float(similarity) - head.eps < 1e-5


def test_replace_puts_each_prototype_on_a_distinct_example_of_its_class(tiny_run, tiny_loaded):
    model, record = tiny_loaded.model, projection_of(tiny_loaded.model)
    assert record.mode == "replace" and record.shared_examples == 0
    dm = tiny_loaded.datamodule()
    split = dm.role_split("train")
    anchors = [p.replaced_by for p in record.prototypes]
    assert len(set(anchors)) == len(anchors)
    with torch.no_grad():
        for p in record.prototypes:
            j, index = p.prototype_id, p.replaced_by
            assert split.labels[index] == p.class_index == int(model.head.prototype_class[j])
            batch = next(iter(dm.dataloader("train", indices=[index], shard=False)))
            sims = forward(model, batch)["similarities"][0]
            # The prototype sits on the example (float noise of batching aside), so it is that
            # example's most similar prototype by far.
            assert sits_on(sims[j], model.head) and int(sims.argmax()) == j
            assert p.nearest[0].index == index and p.nearest[0].text == split.texts[index]


def test_every_nearest_example_is_of_the_prototype_class_and_sorted(tiny_loaded):
    for p in projection_of(tiny_loaded.model).prototypes:
        assert p.nearest and all(n.label == p.class_index for n in p.nearest)
        scores = [n.similarity for n in p.nearest]
        assert scores == sorted(scores, reverse=True)
        assert {"text", "label", "row", "similarity"} <= set(dataclasses.asdict(p.nearest[0]))


def test_link_records_neighbours_without_moving_prototypes(tiny_run):
    loaded = load(tiny_run / "checkpoints" / "last.ckpt")
    before = loaded.model.head.prototypes.detach().clone()
    dm = loaded.datamodule()
    record = project(loaded.model, encode_split(loaded.model, dm, "train"), dm.role_split("train"), "link", 3)
    assert torch.equal(loaded.model.head.prototypes, before)
    assert record.mode == "link" and all(len(p.nearest) == 3 for p in record.prototypes)


def test_projection_travels_with_the_checkpoint_and_results(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())
    assert results["shipped_checkpoint"].endswith("projected.ckpt")
    assert results["projection"]["mode"] == "replace"
    assert "unprojected/test/acc" in results["metrics"]
    saved = json.loads((tiny_run / "prototypes.json").read_text())
    ckpt = torch.load(tiny_run / "checkpoints" / "projected.ckpt", weights_only=True)
    assert ckpt["protolm"]["projection"] == saved


def test_assign_distinct_shares_only_when_a_class_runs_out():
    scores = torch.tensor([[0.9, 0.5], [0.8, 0.7], [0.95, -torch.inf]])
    indices = torch.tensor([[4, 6], [4, 7], [4, -1]])
    chosen, shared = assign_distinct(Neighbours(scores, indices))
    assert chosen == [6, 7, 4] and shared == 0  # the most confident prototype (2) picks first
    chosen, shared = assign_distinct(Neighbours(scores[:, :1], indices[:, :1]))
    assert chosen == [4, 4, 4] and shared == 2


def test_projection_every_n_epochs_and_last_layer_phase(make_config):
    from protolm.training.train import train

    results = train(
        make_config(
            "backbone=tiny",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "trainer.max_epochs=2",
            "data.max_train_samples=64",
            "data.max_eval_samples=32",
            "head.num_prototypes=4",
            "head.similarity=inv_l2",  # the shared tiny run is cosine: cover the distance path too
            "project.every_n_epochs=1",
            "project.mode=replace",
            "project.last_layer_epochs=1",
            "health.at_end=false",
        )
    )
    assert results["projection"]["mode"] == "replace"
    loaded = load(results["shipped_checkpoint"])
    # After the last-layer phase the prototypes still sit on their examples.
    dm = loaded.datamodule()
    index = projection_of(loaded.model).prototypes[0].replaced_by
    with torch.no_grad():
        batch = next(iter(dm.dataloader("train", indices=[index], shard=False)))
        sims = forward(loaded.model, batch)["similarities"][0]
    assert sits_on(sims[0], loaded.model.head)


PROJECTION = torch.rand(2, 5, generator=torch.Generator().manual_seed(1))


def _encode_shard(rank, world, pooled, labels, out):
    import torch.distributed as dist

    from protolm.utils.processes import gather_rows

    dist.init_process_group("gloo", init_method=f"file://{out}.init", rank=rank, world_size=world)
    mine = torch.arange(rank, len(pooled), world)  # this rank's shard, as the evaluation sampler deals it
    indices, rows = gather_rows(mine, pooled[mine], "cpu")
    gathered = torch.empty_like(pooled)
    gathered[indices] = rows
    head = torch.nn.Module()
    head.num_prototypes, head.num_classes = 5, 1
    head.prototypes, head.prototype_class = torch.zeros(5, 2), torch.zeros(5, dtype=torch.long)
    head.similarities = lambda x: x @ PROJECTION  # similarities: a fixed linear map of the features
    found = nearest_examples(head, Features("train", gathered, labels), 3)
    torch.save({"pooled": gathered, "scores": found.scores, "indices": found.indices}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_features_gathered_from_two_processes_equal_one_process(tmp_path):
    """Under DDP each process encodes its shard; gathered, every process holds the whole split's
    features, hence the global top-k."""
    import torch.multiprocessing as mp

    pooled = torch.rand(101, 2, generator=torch.Generator().manual_seed(0))  # shards of 51 and 50 rows
    labels = torch.zeros(101, dtype=torch.long)
    mp.spawn(_encode_shard, args=(2, pooled, labels, str(tmp_path / "topk")), nprocs=2, join=True)
    expected = torch.topk((pooled @ PROJECTION).t(), 3, dim=1)
    for rank in (0, 1):
        merged = torch.load(tmp_path / f"topk.{rank}", weights_only=True)
        assert torch.equal(merged["pooled"], pooled)
        assert torch.equal(merged["indices"], expected.indices)
        torch.testing.assert_close(merged["scores"], expected.values)
