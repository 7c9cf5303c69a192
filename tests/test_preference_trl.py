"""The factory's preference losses equal TRL 1.x's on the same batch (each method, a tiny model, 1e-5): TRL's own
trainer tokenises and collates the rows and computes its loss; the factory packs the same token ids into one row
and computes its own."""

from __future__ import annotations

import warnings

import pytest

import torch  # noqa: E402

try:
    import trl  # the reference these tests compare against (the dev extra installs it)
except ImportError:
    trl = None


@pytest.fixture(autouse=True)
def _needs_trl():
    if trl is None:
        from conftest import missing

        missing("trl is not installed (pip install -e '.[dev]')", "FACTORY_REQUIRE_EXTRAS")

ROWS = 4


def _rows(kind: str) -> list[dict]:
    answers = ["1", "two words", "a longer answer here", "9"]
    wrong = ["7 or so", "no", "x", "something else entirely"]
    if kind == "kto":
        return [{"prompt": [{"role": "user", "content": f"What is {i} plus one?"}],
                 "completion": [{"role": "assistant", "content": (answers if i % 2 else wrong)[i]}],
                 "label": bool(i % 2)} for i in range(ROWS)]
    return [{"prompt": [{"role": "user", "content": f"What is {i} plus one?"}],
             "chosen": [{"role": "assistant", "content": answers[i]}],
             "rejected": [{"role": "assistant", "content": wrong[i]}]} for i in range(ROWS)]


def _perturb(model, seed: int = 0) -> None:
    """Move the policy away from the reference, the same way for both sides."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)


def _trl_trainer(method: str, model, tok, tmp_path, **settings):
    from datasets import Dataset

    common = dict(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=ROWS, report_to=[], use_cpu=True,
                  bf16=False, remove_unused_columns=False)
    data = Dataset.from_list(_rows("kto" if method == "kto" else "pairs"))
    if method in ("dpo", "ipo"):
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(**common, beta=settings["beta"], max_length=None,
                        loss_type=["ipo"] if method == "ipo" else settings.get("loss_type", ["sigmoid"]))
        return DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
    if method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(model=model, args=ORPOConfig(**common, beta=settings["beta"]), train_dataset=data,
                           processing_class=tok)
    if method == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        cfg = CPOConfig(**common, beta=settings["beta"], loss_type="simpo", simpo_gamma=settings["gamma"],
                        cpo_alpha=settings["cpo_alpha"])
        return CPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
    from trl import KTOConfig, KTOTrainer

    cfg = KTOConfig(**common, beta=settings["beta"], desirable_weight=settings["dw"], undesirable_weight=settings["uw"])
    return KTOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)


def _examples(method: str, rows: list[dict]):
    """The factory's examples from the token ids TRL made."""
    from factory.data.pair_data import Tokens

    if method == "kto":
        return [Tokens(r["prompt_ids"], r["completion_ids"], None, r["label"]) for r in rows]
    if method in ("orpo", "simpo"):  # TRL's older tokenisation: whole sequences, the prompt's ids apart
        n = [len(r["prompt_input_ids"]) for r in rows]
        return [Tokens(r["prompt_input_ids"], r["chosen_input_ids"][k:], r["rejected_input_ids"][k:])
                for r, k in zip(rows, n)]
    return [Tokens(r["prompt_ids"], r["chosen_ids"], r["rejected_ids"]) for r in rows]


CASES = [
    ("dpo", {"beta": 0.1}, {}),
    ("dpo", {"beta": 0.3, "loss_type": ["hinge", "bco_pair"]}, {"dpo_loss_type": ["hinge", "bco_pair"],
                                                                 "dpo_loss_weights": [1.0, 1.0]}),
    ("ipo", {"beta": 0.2}, {}),
    ("orpo", {"beta": 0.1}, {}),
    ("simpo", {"beta": 2.0, "gamma": 0.5, "cpo_alpha": 1.0}, {}),
    ("kto", {"beta": 0.1, "dw": 1.0, "uw": 1.5}, {"kto_undesirable_weight": 1.5}),
]


@pytest.mark.parametrize("method,settings,keys", CASES, ids=[f"{c[0]}-{'-'.join(c[1].get('loss_type', []))}"
                                                             for c in CASES])
def test_loss_on_one_batch_equals_trls(method, settings, keys, tiny_base, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from factory.base.progress import Silent
    from factory.request.config import parse_request
    from factory.train.preference import NEEDS_REFERENCE, PairCollator, batch_loss, reference_logps

    warnings.filterwarnings("ignore")
    tok = AutoTokenizer.from_pretrained(tiny_base)
    trainer = _trl_trainer(method, AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32), tok, tmp_path,
                           **settings)
    _perturb(trainer.model)  # TRL's reference is the model as it started; the policy moves away from it
    rows = [trainer.train_dataset[i] for i in range(ROWS)]
    batch = trainer._prepare_inputs(trainer.data_collator(rows))
    trainer.model.train()
    theirs = trainer.compute_loss(trainer.model, batch).item()

    beta = {"rl_beta": settings["beta"]} if method != "orpo" else {"orpo_alpha": settings["beta"]}
    extra = {"simpo_gamma": settings["gamma"], "cpo_alpha": settings["cpo_alpha"]} if method == "simpo" else {}
    request = parse_request({"base_model": str(tiny_base), "rl": method, **beta, **extra, **keys,
                             "datasets": [{"path": "pairs.jsonl", "type": "kto" if method == "kto" else "preference"}],
                             "micro_batch_size": ROWS})
    examples = _examples(method, rows)
    item = {"examples": examples}
    if method in NEEDS_REFERENCE:
        start = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
        refs, kl_refs = reference_logps(start, examples, [list(range(ROWS))], method, False, Silent())
        item["ref"] = refs[0]
        if kl_refs:
            item["kl_ref"] = kl_refs[0]
    ours = batch_loss(request, trainer.model, PairCollator(method)([item]))[0].item()
    assert theirs != pytest.approx(0.6931, abs=1e-3) or method != "dpo"  # the policy did move
    assert ours == pytest.approx(theirs, abs=1e-5), (method, ours, theirs)
