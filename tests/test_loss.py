"""factory.loss: logits only at trained positions give the model's own loss and gradients."""

from __future__ import annotations

import random

import pytest
import torch

from factory.chat import Encoded
from factory.loss import IGNORE, kept_logits_loss, trained_positions
from factory.packing import FlattenCollator


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


@pytest.mark.parametrize("num_items", [None, 100])
def test_same_loss_and_gradients_as_the_models_own_loss(num_items):
    from factory.tiny import build_model

    batch = _batch(0)
    grads = []
    for kept in (False, True):
        model = build_model(300, seed=7)
        model.config.use_cache = False
        inputs = {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}
        if kept:
            out = model(**inputs, logits_to_keep=batch["logits_to_keep"])
            loss = kept_logits_loss(out, batch["labels"], num_items_in_batch=num_items)
        else:
            kw = {"num_items_in_batch": num_items} if num_items is not None else {}
            loss = model(**inputs, labels=batch["labels"], **kw).loss
        loss.backward()
        grads.append((loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (whole, g_whole), (part, g_part) = grads
    assert part == pytest.approx(whole, rel=1e-6)
    assert g_whole.keys() == g_part.keys()
    for name in g_whole:
        torch.testing.assert_close(g_part[name], g_whole[name], rtol=1e-5, atol=1e-7, msg=name)


def test_a_row_with_nothing_trained_gives_zero_loss_without_error():
    from factory.tiny import build_model

    model = build_model(300, seed=1)
    batch = FlattenCollator()([[Encoded([1, 2, 3, 4], [IGNORE] * 4)]])
    out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], logits_to_keep=batch["logits_to_keep"])
    assert out.logits.shape[1] == 0
    loss = kept_logits_loss(out, batch["labels"])
    loss.backward()
    assert loss.item() == 0.0
