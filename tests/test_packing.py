"""Best-fit-decreasing bins, and packed rows that keep samples apart (logits equal to unpacked)."""

from __future__ import annotations

import random

import pytest
import torch

from factory.data.chat import IGNORE, Encoded
from factory.train.loss import kept_logits_loss
from factory.train.packing import FlattenCollator, best_fit_decreasing, next_fit, pack


def test_bins_respect_capacity_and_hold_every_item_once():
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(2000)]
    bins = best_fit_decreasing(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    lower_bound = -(-sum(lengths) // 512)
    assert len(bins) <= lower_bound * 1.02  # near-optimal on random lengths


def test_too_long_item_is_an_error():
    with pytest.raises(ValueError):
        best_fit_decreasing([10, 600], 512)


def test_pack_order_is_seeded_not_sorted():
    samples = [Encoded(list(range(n)), list(range(n))) for n in range(5, 60)]
    a, b, c = pack(samples, 128, seed=1), pack(samples, 128, seed=1), pack(samples, 128, seed=2)
    assert a.bins == b.bins and a.bins != c.bins
    firsts = [sum(len(samples[i].input_ids) for i in bin_) for bin_ in a.bins]
    assert firsts != sorted(firsts, reverse=True)
    assert 0.9 < a.efficiency <= 1.0


def test_sequential_packing_keeps_the_samples_order():
    assert next_fit([5, 5, 5, 9, 2, 1], 10) == [[0, 1], [2], [3], [4, 5]]
    samples = [Encoded(list(range(n)), list(range(n))) for n in range(5, 60)]
    packed = pack(samples, 128, seed=1, sequential=True)
    assert [i for b in packed.bins for i in b] == list(range(len(samples)))  # every sample once, in order
    assert all(sum(len(samples[i].input_ids) for i in b) <= 128 for b in packed.bins)
    with pytest.raises(ValueError):
        next_fit([10, 600], 512)


def test_collator_restarts_positions_and_masks_boundaries():
    s1, s2 = Encoded([5, 6, 7], [5, 6, 7]), Encoded([8, 9], [IGNORE, 9])
    batch = FlattenCollator()([[s1, s2]])
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7, IGNORE, 9]]
    assert "attention_mask" not in batch


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_logits_equal_per_sample_logits(attn):
    from factory.demo.tiny import build_model

    model = build_model(300, seed=3)
    model.config._attn_implementation = attn
    model.config.use_cache = False
    model.eval()
    rng = random.Random(0)
    samples = [Encoded(ids := [rng.randrange(300) for _ in range(n)], ids) for n in (7, 19, 3, 30)]
    batch = FlattenCollator()([samples[:2], samples[2:]])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        start = 0
        for s in samples:
            alone = model(input_ids=torch.tensor([s.input_ids]), use_cache=False).logits[0]
            assert (packed[start:start + len(s.input_ids)] - alone).abs().max() <= 1e-4
            start += len(s.input_ids)


def test_packed_loss_is_the_token_weighted_mean_of_sample_losses():
    from factory.demo.tiny import build_model

    model = build_model(300, seed=5)
    model.config.use_cache = False
    model.eval()
    rng = random.Random(1)
    samples = []
    for n, prompt in ((40, 30), (9, 4), (25, 5)):  # very different numbers of trained tokens
        ids = [rng.randrange(300) for _ in range(n)]
        samples.append(Encoded(ids, [IGNORE] * prompt + ids[prompt:]))
    batch = FlattenCollator()([samples])
    with torch.no_grad():
        whole = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"]).loss
        kept = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                     logits_to_keep=batch["logits_to_keep"])
        assert kept.logits.shape[1] == sum(len(s.input_ids) - 1 - s.labels[1:].count(IGNORE) for s in samples)
        packed = kept_logits_loss(kept, batch["labels"]).item()
        assert packed == pytest.approx(whole.item(), rel=1e-6)  # the model's own loss over every logit
        losses, counts = [], []
        for s in samples:
            labels = [IGNORE] + s.labels[1:]
            losses.append(model(input_ids=torch.tensor([s.input_ids]), labels=torch.tensor([labels])).loss.item())
            counts.append(sum(x != IGNORE for x in labels[1:]))
    weighted = sum(l * c for l, c in zip(losses, counts)) / sum(counts)
    assert packed == pytest.approx(weighted, rel=1e-5)
    assert abs(packed - sum(losses) / len(losses)) > 1e-3  # and not the plain mean of per-sample means


@pytest.mark.parametrize("lazy", [False, True])
def test_gradient_accumulation_averages_over_all_target_tokens(tiny_base, tmp_path, lazy):
    """One SGD step over two micro-batches (5 and 50 trained tokens) moves the weights by exactly
    -lr * grad(sum of token losses / all 55 tokens); the same from a list and from Samples read lazily."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.request.config import parse_request
    from factory.data.encoded_store import Samples
    from factory.base.progress import Silent
    from factory.train.train import train

    rng = random.Random(2)
    a = [rng.randrange(300) for _ in range(40)]
    b = [rng.randrange(300) for _ in range(60)]
    samples = [Encoded(a, [IGNORE] * 35 + a[35:]), Encoded(b, [IGNORE] * 10 + b[10:])]
    lr = 0.5
    req = parse_request({"base_model": str(tiny_base), "datasets": [{"path": "o/d"}], "sequence_len": 64,
                         "micro_batch_size": 1, "gradient_accumulation_steps": 2, "max_steps": 1,
                         "optimizer": "sgd", "learning_rate": lr, "lr_scheduler": "constant",
                         "max_grad_norm": 1e9, "bf16": False, "save_steps": 100})
    tok = AutoTokenizer.from_pretrained(tiny_base)
    result = train(req, tiny_base, tok, Samples.of(samples) if lazy else samples, [], tmp_path / "run", Silent())
    assert result.tokens_seen == 100  # both samples, every real token, no padding
    trained = AutoModelForCausalLM.from_pretrained(result.output)

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    model.config.use_cache = False
    total, count = 0.0, 0
    for s in samples:
        logits = model(input_ids=torch.tensor([s.input_ids])).logits[0, :-1]
        target = torch.tensor(s.labels[1:])
        total = total + torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE, reduction="sum")
        count += int((target != IGNORE).sum())
    (total / count).backward()
    before = dict(model.named_parameters())
    worst = 0.0
    for name, p in trained.named_parameters():
        if before[name].grad is None:
            continue
        expected = before[name].detach() - lr * before[name].grad
        worst = max(worst, (p.detach() - expected).abs().max().item())
    assert worst < 1e-5


def test_flash_attention_is_picked_only_where_it_can_run():
    from factory.request.config import parse_request
    from factory.train.train import pick_attention

    default = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "bf16": True})
    assert pick_attention(default, cuda=True, has_flash=True) == "flash_attention_2"
    assert pick_attention(default, cuda=False, has_flash=True) == "sdpa"
    assert pick_attention(default, cuda=True, has_flash=False) == "sdpa"
    chosen = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "bf16": True, "attn_implementation": "eager"})
    assert pick_attention(chosen, cuda=True, has_flash=True) == "eager"  # the user's choice stands
    fp32 = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "bf16": False})
    assert pick_attention(fp32, cuda=True, has_flash=True) == "sdpa"  # flash-attention needs bf16/fp16
    asked = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], "attn_implementation": "flash_attention_2"})
    assert pick_attention(asked, cuda=True, has_flash=True) == "flash_attention_2"
    assert pick_attention(asked, cuda=False, has_flash=False) == "sdpa"  # an Axolotl config on a CPU still runs


def test_prepare_pads_batches_in_the_order_training_uses(tmp_path, home, tiny_base, capsys):
    """`factory prepare` without packing: slots are counted over the micro-batches of training's seeded order."""
    import json

    import yaml

    from factory.cli.main import main
    from factory.demo.synthetic import generate
    from factory.train.train import epoch_order

    rows = generate(120, held_out=False, seed=5)
    for i, r in enumerate(rows):  # lengths that vary a lot, so the batch order changes the padding
        r["output"] = r["output"] + " la" * (i % 17) * 3
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    req = {"base_model": str(tiny_base), "datasets": [{"path": "d.jsonl"}], "sequence_len": 256,
           "sample_packing": False, "micro_batch_size": 4, "seed": 9}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(req))
    assert main(["prepare", str(tmp_path / "r.yaml"), "--json", str(tmp_path / "out.json")]) == 0
    report = json.loads((tmp_path / "out.json").read_text())
    from factory.data import encoded_store

    _, train, _ = encoded_store.load(next(home.glob("runs/*/data/encoded")))
    lengths = [len(e.input_ids) for e in train]

    def slots(order):
        batches = [[lengths[i] for i in order[k:k + 4]] for k in range(0, len(order), 4)]
        return sum(max(b) * len(b) for b in batches)

    trained = slots(epoch_order(len(lengths), 1, None, 9))
    assert report["slots"] == trained
    assert trained != slots(list(range(len(lengths))))  # the file's order would give another figure
