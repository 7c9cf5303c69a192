"""Axolotl configs as requests: the 192 example configs validate or are refused by capability, and five
of them run (prepare + a short training run) with only base_model and the dataset paths substituted."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from factory.cli.main import main
from factory.request.config import parse_request
from factory.base.errors import UserError


def _req(**kw):
    return parse_request({"base_model": "o/m", "datasets": [{"path": "o/d"}], **kw})


def test_every_optimizer_name_is_one_the_trainer_knows():
    import typing

    from transformers.training_args import OptimizerNames

    from factory.request.config import Optimizer

    assert set(typing.get_args(Optimizer)) <= {o.value for o in OptimizerNames}


def test_keys_that_ask_for_nothing_are_accepted_and_listed():
    r = _req(wandb_project=None, lora_model_dir=None, load_in_8bit=False, strict=False, model_type="AutoModelForCausalLM",
             tokenizer_type="AutoTokenizer", eval_sample_packing=True, plugins=[], fp16=None)
    summary = "\n".join(r.compat.summary())
    for key in ("strict", "model_type", "tokenizer_type", "eval_sample_packing", "fp16: null", "wandb_project: null"):
        assert key in summary
    assert r.fp16 is False and r.load_in_8bit is False


def test_a_typo_is_still_an_error_with_a_suggestion():
    with pytest.raises(UserError, match="did you mean `learning_rate`"):
        _req(learning_rat=1e-4)


def test_capabilities_are_refused_once_each_by_name():
    with pytest.raises(UserError) as exc:
        _req(rl="grpo", trl={"beta": 0.1}, qat={"weight_dtype": "int8"}, processor_type="AutoProcessor",
             reward_model=True)
    lines = str(exc.value).splitlines()
    assert len(lines) == 6  # the header and one line per capability
    assert any("rl: grpo samples answers" in line and line.endswith("(rl: grpo)") for line in lines)
    assert any(line.strip().startswith("online RL with generation") and line.endswith("(trl)") for line in lines)
    assert any(line.strip().startswith("reward models") for line in lines)
    assert any("quantisation-aware training" in line for line in lines)
    assert any("vision and audio models" in line for line in lines)


def test_tensor_and_context_parallelism_are_ignored_with_a_warning():
    from factory.admission.lint import Facts, lint

    r = _req(context_parallel_size=2, tensor_parallel_size=2, dp_shard_size=2, sequence_parallel_degree=1)
    assert r.distributed.strategy == "fsdp"  # the data-parallel sharding the config also asks for
    assert set(r.compat.ignored_here) == {"context_parallel_size", "tensor_parallel_size"}
    assert "sequence_parallel_degree" in r.compat.no_effect  # 1 asks for nothing
    streamed = _req(streaming=True, streaming_multipack_buffer_size=10000, use_ray=True, ray_num_workers=4)
    assert set(streamed.compat.ignored_here) == {"streaming", "streaming_multipack_buffer_size", "use_ray",
                                                 "ray_num_workers"}
    with pytest.raises(UserError, match="streaming and pretraining datasets"):
        _req(pretraining_dataset=[{"path": "o/p"}])
    found = [f for f in lint(r, Facts()) if f.rule == "parallelism-not-available"]
    assert len(found) == 1 and found[0].severity == "warning"
    assert found[0].message.startswith("context_parallel_size, tensor_parallel_size ignored: the same model is trained")
    assert not [f for f in lint(_req(), Facts()) if f.rule == "parallelism-not-available"]


def test_axolotl_jeopardy_rows_become_conversations_as_axolotl_builds_them():
    from factory.data.formats import JEOPARDY_SYSTEM, Malformed, normalise

    spec = _req(datasets=[{"path": "o/d", "type": "jeopardy"}]).datasets[0]
    sample = normalise({"question": "This planet is red", "category": "SPACE", "answer": "Mars"}, spec)
    assert sample.messages == (("system", JEOPARDY_SYSTEM), ("user", "This planet is red\n\nSPACE"),
                               ("assistant", "what is Mars"))
    with pytest.raises(Malformed, match="missing field 'answer'"):
        normalise({"question": "q", "category": "c"}, spec)


def test_translations():
    assert _req(deepspeed="deepspeed_configs/zero3_bf16.json").distributed.zero_stage == 3
    assert _req(fsdp_version=2, fsdp_config={"offload_params": False}).distributed.strategy == "fsdp"
    assert _req(dp_shard_size=4).distributed.strategy == "fsdp"
    assert _req(batch_size=8, micro_batch_size=2).gradient_accumulation_steps == 4
    assert _req(save_strategy="epoch").saves_per_epoch == 1
    assert "save_strategy: steps" in _req(save_strategy="steps", save_steps=100).compat.no_effect
    assert _req(tokens={"pad_token": "<pad>"}).special_tokens == {"pad_token": "<pad>"}
    assert _req(attn_implementation="xformers").attn_implementation == "sdpa"
    assert _req(liger_rms_norm=True, liger_glu_activation=True).liger_kernel is True
    cce = _req(plugins=["axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"])
    assert cce.cut_cross_entropy is True and not cce.compat.ignored_here
    assert _req(chat_template="tokenizer_default").chat_template is None
    r = parse_request({"base_model": "o/m", "datasets": [{"path": "o/d", "type": "chat_template", "field_messages": "c",
                                                          "message_field_role": "from", "message_field_content": "value",
                                                          "roles_to_train": ["assistant"], "train_on_eos": "turn"}]})
    d = r.datasets[0]
    assert (d.type, d.field_messages, d.message_property_mappings) == ("messages", "c", {"role": "from", "content": "value"})
    with pytest.raises(UserError, match="training on turns of other roles"):
        parse_request({"base_model": "o/m", "datasets": [{"path": "o/d", "type": "chat_template", "roles_to_train": ["user"]}]})
    with pytest.raises(UserError, match="not a template name the factory knows; did you mean 'chatml'"):
        _req(chat_template="chatmlx")


def test_schedule_and_tracking_arguments(tmp_path, monkeypatch):
    from factory.train.train_options import report_to, schedule_args, tracker_env, trackers

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    if trackers(_req(wandb_project="p", wandb_mode="offline"))["wandb"] is None:  # wandb installed (dev extra)
        assert report_to(_req(wandb_project="p", wandb_mode="offline")) == ["wandb"]
        assert report_to(_req(wandb_project="p")) == []  # online without a key: skipped, and lint says why
        assert "no W&B API key" in trackers(_req(wandb_project="p"))["wandb"]

    assert schedule_args(_req(saves_per_epoch=4), 100, False)["save_steps"] == 25
    args = schedule_args(_req(evals_per_epoch=2, early_stopping_patience=3), 100, True)
    assert args["eval_steps"] == args["save_steps"] == 50 and args["load_best_model_at_end"]
    assert "eval_strategy" not in schedule_args(_req(evals_per_epoch=2), 100, False)  # nothing to evaluate
    assert report_to(_req()) == []
    assert tracker_env(_req(wandb_project="p", wandb_mode="offline")) == {"WANDB_PROJECT": "p", "WANDB_MODE": "offline"}


def test_front_doors_refuse_what_reaches_the_workers_disk_or_accounts():
    from factory.admission.remote_policy import check_raw

    check_raw({"wandb_project": None, "dataset_prepared_path": None, "trust_remote_code": False}, "r")  # empty: fine
    for key, value in (("mlflow_tracking_uri", "http://x"), ("wandb_project", "p"), ("lora_model_dir", "/a")):
        with pytest.raises(UserError, match="operator-only"):
            check_raw({key: value}, "r")


def test_every_example_config_validates_or_is_refused_by_capability(shared, home, monkeypatch):
    """`factory validate` over Axolotl's 192 examples, offline (no base model facts): none crashes.
    The rates and the refusals per capability are pinned (the README prints the same table)."""
    from factory.cli.axolotl_survey import survey

    monkeypatch.setenv("FACTORY_HUB", "local")
    result = survey(shared / "axolotl_examples")
    print(result.table())
    assert result.total == 192 and not result.crashed, result.crashed
    assert (result.valid, result.sft_valid, result.sft_total) == (124, 117, 143)
    assert not any("unknown key" in r for r in result.refusals), result.refusals
    # the rate per capability, pinned: a change here is a regression or a capability added (update the README)
    assert {r.split(" (")[0]: n for r, n in result.by_capability().items()} == {
        "vision and audio models": 27,
        "quantisation-aware training and low-bit training formats": 17,
        "mixture-of-experts kernels and expert parallelism": 9,
        "Mistral's own tokenizer library": 8,
        "online RL with generation during training": 6,
        "energy-based finetuning": 5,
        "streaming and pretraining datasets": 4,
        "reward models": 4,
        "LoftQ initialisation of LoRA": 1,
        "ReLoRA and jagged-restart schedules": 1,
        "diffusion language models": 1,
        "learning-rate schedules of older Axolotl releases": 1,
        "model surgery": 1,
    }


# ---- five configs, run -----------------------------------------------------------------------------

FIVE = {  # config: (what it shows, the shared file in its format, rows)
    "llama-3__lora-1b.yml": ("LoRA, special_tokens pad token", "sft_alpaca/alpaca_libre_tasks_v3.jsonl", 24),
    "llama-3__qlora.yml": ("QLoRA", "sft_alpaca/alpaca_libre_tasks_v3.jsonl", 24),
    "LiquidAI__lfm2-350m-fft.yaml": ("full finetune, chat_template with ShareGPT fields, split train[:20%]",
                                     "chat_sharegpt/fastchat_dummy_conversation.json", 60),
    "archived__deepcoder__deepcoder-14B-preview-lora.yml": ("chat_template dataset (messages), LoRA on an 8-bit base, "
                                                            "evals_per_epoch, saves_per_epoch",
                                                            "chat_messages/llamafactory_kto_en_demo.json", 12),
    "archived__mpt-7b__config.yml": ("full finetune, Axolotl's old `tokens:` as special tokens",
                                     "sft_alpaca/alpaca_libre_tasks_v3.jsonl", 24),
}


@pytest.fixture(scope="module")
def long_tiny_base(tmp_path_factory):
    """The tiny base with room for Axolotl's sequence lengths (max_position_embeddings 8192)."""
    from factory.demo.tiny import write_base

    path = tmp_path_factory.mktemp("tiny-8k")
    write_base(path)
    config = json.loads((path / "config.json").read_text())
    config["max_position_embeddings"] = 8192
    (path / "config.json").write_text(json.dumps(config))
    return path


def _rows(shared, name: str, n: int) -> list:
    path = shared / name
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.suffix == ".jsonl" \
        else json.loads(path.read_text())
    return rows[:n]


@pytest.mark.parametrize("config", list(FIVE))
def test_five_axolotl_configs_run_with_two_substitutions(config, shared, home, long_tiny_base, tmp_path, monkeypatch):
    monkeypatch.setenv("FACTORY_HUB", "local")
    what, data_name, n = FIVE[config]
    data = yaml.safe_load((shared / "axolotl_examples" / config).read_text())
    data_file = tmp_path / f"data{'.jsonl' if data_name.endswith('.jsonl') else '.json'}"
    rows = _rows(shared, data_name, n)
    data_file.write_text("".join(json.dumps(r) + "\n" for r in rows) if data_file.suffix == ".jsonl" else json.dumps(rows))
    data["base_model"] = str(long_tiny_base)  # substitution 1
    for ds in data["datasets"]:
        ds["path"] = str(data_file)  # substitution 2
    request = tmp_path / config
    request.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["validate", str(request)]) == 0
    assert main(["prepare", str(request)]) == 0
    assert main(["run", str(request)]) == 0, what
    runs = list((tmp_path / "outputs").glob("*")) or list((home / "runs").glob("*"))
    merged = next(p for r in runs for p in [r / "merged"] if p.is_dir())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    wanted = data.get("special_tokens") or (data["tokens"] if isinstance(data.get("tokens"), dict) else None)
    if wanted:
        assert tok.pad_token == wanted["pad_token"]
        config_json = json.loads((merged / "config.json").read_text())
        assert config_json["vocab_size"] >= len(tok)  # the embeddings grew with the tokenizer
    shutil.rmtree(tmp_path / "outputs", ignore_errors=True)
