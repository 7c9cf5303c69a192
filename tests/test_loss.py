"""factory.loss: logits only at trained positions give the model's own loss and gradients."""

from __future__ import annotations

import random

import pytest
import torch

from factory.data.chat import Encoded
from factory.train.loss import IGNORE, kept_logits_loss, trained_positions
from factory.train.packing import FlattenCollator


def _batch(seed: int):
    rng = random.Random(seed)
    samples = []
    for n, prompt in ((40, 30), (9, 4), (25, 5), (12, 12)):  # the last one trains nothing
        ids = [rng.randrange(300) for _ in range(n)]
        samples.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
    return FlattenCollator()([samples])


def test_trained_positions_are_those_whose_next_token_is_trained():
    labels = torch.tensor([[IGNORE, 5, IGNORE, IGNORE, 7, 8]])
    assert trained_positions(labels).tolist() == [0, 3, 4]


def _loss_and_grads(loss_of) -> tuple[float, dict]:
    """A fresh tiny model's loss, as loss_of(model, inputs, batch) computes it on batch 0, and every parameter's gradient."""
    from factory.demo.tiny import build_model

    batch = _batch(0)
    model = build_model(300, seed=7)
    model.config.use_cache = False
    loss = loss_of(model, {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}, batch)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _models_own_loss(num_items):
    kw = {"num_items_in_batch": num_items} if num_items is not None else {}
    return lambda model, inputs, batch: model(**inputs, labels=batch["labels"], **kw).loss


@pytest.mark.parametrize("num_items", [None, 100])
def test_same_loss_and_gradients_as_the_models_own_loss(num_items):
    whole, g_whole = _loss_and_grads(_models_own_loss(num_items))
    part, g_part = _loss_and_grads(lambda model, inputs, batch: kept_logits_loss(
        model(**inputs, logits_to_keep=batch["logits_to_keep"]), batch["labels"], num_items_in_batch=num_items))
    assert part == pytest.approx(whole, rel=1e-6)
    assert g_whole.keys() == g_part.keys()
    for name in g_whole:
        torch.testing.assert_close(g_part[name], g_whole[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_row_with_nothing_trained_gives_zero_loss_without_error():
    from factory.demo.tiny import build_model

    model = build_model(300, seed=1)
    batch = FlattenCollator()([[Encoded([1, 2, 3, 4], [IGNORE] * 4)]])
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=batch["logits_to_keep"])
    assert out.logits.shape[1] == 0
    loss = kept_logits_loss(out, batch["labels"])
    loss.backward()
    assert loss.item() == 0.0


def _cce_installed():
    import importlib.util

    if importlib.util.find_spec("cut_cross_entropy") is None:
        from conftest import missing

        missing("cut-cross-entropy is not installed (the `dev` and `gpu` extras have it)", "FACTORY_REQUIRE_EXTRAS")


def test_cut_cross_entropy_gives_the_same_loss_and_gradients_from_hidden_states():
    """The CCE path (no logits: the collator asks for hidden states) against the model's own loss. On CUDA
    the loss runs CCE's Triton kernel; here its torch reference implementation, through the same code."""
    from factory.train.loss import cce_loss

    _cce_installed()
    asked = FlattenCollator(hidden_states=True)([[Encoded([1, 2, 3], [IGNORE, 2, 3])]])
    assert asked["logits_to_keep"].numel() == 0 and asked["output_hidden_states"] is True

    def through_cce(model, inputs, batch):
        out = model(**inputs, logits_to_keep=asked["logits_to_keep"], output_hidden_states=True)
        assert out.logits.shape[1] == 0  # no logits were computed
        return cce_loss(model, impl="torch_compile")(out, batch["labels"], num_items_in_batch=100)

    whole, g_whole = _loss_and_grads(_models_own_loss(100))
    cce, g_cce = _loss_and_grads(through_cce)
    assert cce == pytest.approx(whole, rel=1e-5)
    for name in g_whole:
        torch.testing.assert_close(g_cce[name], g_whole[name], rtol=1e-4, atol=1e-6, msg=name)


def test_cut_cross_entropy_applies_only_where_it_can():
    from factory.request.config import parse_request
    from factory.train.loss import cce_unavailable

    _cce_installed()
    base = {"base_model": "org/base", "datasets": [{"path": "d.jsonl", "type": "alpaca"}]}
    on = parse_request({**base, "cut_cross_entropy": True})
    assert cce_unavailable(on, cuda=True) is None
    assert cce_unavailable(on, cuda=False) == "no CUDA device here"
    assert "packed rows" in cce_unavailable(parse_request({**base, "cut_cross_entropy": True, "sample_packing": False}),
                                            cuda=True)
    assert cce_unavailable(parse_request(base), cuda=True) == "not asked for"
    fsdp = parse_request({**base, "cut_cross_entropy": True, "distributed": {"strategy": "fsdp"}})
    assert cce_unavailable(fsdp, cuda=True, processes=1) is None  # one process shards nothing
    assert "FSDP" in cce_unavailable(fsdp, cuda=True, processes=2)


def test_cut_cross_entropy_refuses_a_head_it_cannot_read():
    from factory.train.loss import cce_loss
    from factory.demo.tiny import build_model

    _cce_installed()
    model = build_model(300, seed=1)
    head = model.get_output_embeddings()
    model.set_output_embeddings(torch.nn.Linear(head.in_features, head.out_features, bias=True))
    with pytest.raises(ValueError, match="plain LM head"):
        cce_loss(model)
