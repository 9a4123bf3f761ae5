"""Optional speed paths compute the same results: bf16 autocast, torch.compile, gradient
checkpointing, frozen lower layers, AdamW's implementations."""

import pytest
import torch

from protolm.config import read_settings
from protolm.modeling.backbone import load_tokenizer
from protolm.training.assemble import build_datamodule, build_model
from protolm.training.train import train
from tests.support import TINY

NO_DROPOUT = "+backbone.config_overrides.hidden_dropout_prob=0.0"
NO_ATTN_DROPOUT = "+backbone.config_overrides.attention_probs_dropout_prob=0.0"


def model_and_batch(make_config, *overrides):
    cfg = make_config(*TINY, NO_DROPOUT, NO_ATTN_DROPOUT, "head.num_prototypes=4", *overrides)
    settings = read_settings(cfg)
    torch.manual_seed(0)
    model = build_model(settings)
    dm = build_datamodule(settings, load_tokenizer(settings.backbone))
    return model, next(iter(dm.dataloader("train", shuffle=True)))


def loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss = model.losses(model(batch), batch["labels"])["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(make_config):
    plain, batch = model_and_batch(make_config)
    checkpointed, _ = model_and_batch(make_config, "backbone.gradient_checkpointing=true")
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpointed.encoder.is_gradient_checkpointing
    loss_a, grads_a = loss_and_grads(plain.train(), batch)
    loss_b, grads_b = loss_and_grads(checkpointed.train(), batch)
    torch.testing.assert_close(loss_a, loss_b)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("implementation", ["foreach", "for_loop"])
def test_fused_adamw_is_the_default_and_updates_as_the_others_do(make_config, implementation):
    from protolm.training.optim import optimizer_and_schedule

    updated = {}
    for name in ("fused", implementation):
        model, batch = model_and_batch(make_config, f"optim.implementation={name}")
        model.train()
        optimizer = optimizer_and_schedule(model, model.optim, total_steps=10)["optimizer"]
        assert bool(optimizer.defaults["fused"]) is (name == "fused")
        assert optimizer.defaults["foreach"] is {"fused": None, "foreach": True, "for_loop": False}[name]
        for _ in range(3):
            loss_and_grads(model, batch)
            optimizer.step()
        updated[name] = {n: p.detach().clone() for n, p in model.named_parameters()}
    default, _ = model_and_batch(make_config)
    assert default.optim.implementation == "fused"
    for name, value in updated["fused"].items():
        torch.testing.assert_close(value, updated[implementation][name], rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_with_fused_adamw_still_clips_the_gradient_norm(make_config):
    import lightning as L

    from protolm.training.optim import optimizer_and_schedule

    model, batch = model_and_batch(make_config)
    model.trainer = L.Trainer(precision="bf16-mixed", accelerator="cpu", gradient_clip_val=0.5, logger=False)
    optimizer = optimizer_and_schedule(model, model.optim, total_steps=10)["optimizer"]
    loss_and_grads(model, batch)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    for grad in grads:
        grad.mul_(1000)  # far above the limit
    model.configure_gradient_clipping(optimizer, 0.5, "norm")
    assert torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item() == pytest.approx(0.5, rel=1e-3)


def test_frozen_lower_layers_get_no_gradient_and_do_not_move(make_config):
    model, batch = model_and_batch(make_config, "optim.freeze_layers=1")
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("model.encoder.embeddings.") for n in frozen) and any(".layer.0." in n for n in frozen)
    assert not any(".layer.1." in n for n in frozen) and not any(n.startswith("model.head.") for n in frozen)
    _, grads = loss_and_grads(model, batch)
    assert frozen.isdisjoint(grads) and any(".layer.1." in n for n in grads)


def test_bf16_autocast_stays_close_to_float32(make_config):
    model, batch = model_and_batch(make_config)
    model.eval()
    with torch.no_grad():
        full = model(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(batch)
    assert half["similarities"].dtype == torch.float32  # distances are never taken in bf16
    torch.testing.assert_close(half["logits"].float(), full["logits"], rtol=0.05, atol=0.05)
    assert (half["logits"].argmax(-1) == full["logits"].argmax(-1)).float().mean() >= 0.9


def test_bf16_mixed_training_runs_end_to_end(make_config):
    results = train(
        make_config(
            *TINY,
            "trainer.precision=bf16-mixed",
            "trainer.max_epochs=1",
            "health.at_end=false",
            "head.num_prototypes=4",
        )
    )
    assert all(torch.isfinite(torch.tensor(v)) for v in results["metrics"].values())


@pytest.mark.slow
def test_torch_compile_computes_the_same_forward_and_backward(make_config):
    eager, batch = model_and_batch(make_config)
    compiled, _ = model_and_batch(make_config, "backbone.compile=true")
    compiled.load_state_dict(eager.state_dict())  # the checkpoint keys are the plain ones
    assert set(compiled.state_dict()) == set(eager.state_dict())
    loss_a, grads_a = loss_and_grads(eager.train(), batch)
    loss_b, grads_b = loss_and_grads(compiled.train(), batch)
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-4, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-3, atol=1e-5, msg=name)
