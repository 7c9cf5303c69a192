"""Reasoning traces in their own field (Axolotl's field_thinking, template_thinking_key, split_thinking): the trace
reaches the chat template under the key it reads, and is trained with its reply; the prompt stays masked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from factory.data.chat import IGNORE, encode
from factory.data.encode import encode_all
from factory.data.formats import Malformed, normalise
from factory.request.config import DatasetSpec, parse_request

SHARED = Path(os.environ.get("FACTORY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
GPT_OSS_STYLE = ("{% for m in messages %}<|start|>{{ m['role'] }}"
                 "{% if m.get('thinking') %}<|channel|>analysis<|message|>{{ m['thinking'] }}<|end|>"
                 "<|start|>assistant<|channel|>final{% endif %}<|message|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|start|>assistant{% endif %}")
ROW = {"messages": [{"role": "user", "content": "What is 6 times 7?"},
                    {"role": "assistant", "content": "42.", "reasoning_content": "Six sevens: 7+7+7+7+7+7 = 42."}]}


def qwen3_template() -> str:
    path = SHARED / "tokenizers" / "qwen3" / "tokenizer_config.json"
    if not path.is_file():
        if os.environ.get("FACTORY_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{path} is missing and FACTORY_REQUIRE_SHARED_DATA=1")
        pytest.skip(f"Qwen3's chat template not found at {path} (../shared/data is absent)")
    return json.loads(path.read_text())["chat_template"]


def trained_text(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE])


def test_the_trace_is_rendered_by_qwen3s_template_and_trained_with_its_reply(tiny_tokenizer):
    template = qwen3_template()
    sample = normalise(ROW, DatasetSpec(path="x.jsonl", type="messages"))
    assert sample.thinking == ((1, "Six sevens: 7+7+7+7+7+7 = 42."),)
    assert sample.as_dicts()[1]["reasoning_content"] == "Six sevens: 7+7+7+7+7+7 = 42."
    rendered = tiny_tokenizer.apply_chat_template(sample.as_dicts(), chat_template=template, tokenize=False)
    assert "<think>\nSix sevens: 7+7+7+7+7+7 = 42.\n</think>\n\n42." in rendered
    one = encode(sample, tiny_tokenizer, template, train_on_inputs=False)
    trained = trained_text(tiny_tokenizer, one)
    assert "Six sevens: 7+7+7+7+7+7 = 42." in trained and "42.<|im_end|>" in trained.replace(" ", "")
    assert "What is 6 times 7?" not in trained  # the prompt is masked
    batch, _ = encode_all([sample], tiny_tokenizer, template, train_on_inputs=False, processes=1)
    assert batch.ids.tolist() == one.input_ids  # the batched encoder agrees with the one-by-one one
    assert batch.trained.tolist() == [label != IGNORE for label in one.labels]


def test_field_thinking_and_template_thinking_key_rename_the_trace(tiny_tokenizer):
    row = {"messages": [ROW["messages"][0], {"role": "assistant", "content": "42.", "thinking": "6*7 = 42"}]}
    spec = DatasetSpec(path="x.jsonl", type="messages", field_thinking="thinking", template_thinking_key="thinking")
    sample = normalise(row, spec)
    assert sample.as_dicts()[1] == {"role": "assistant", "content": "42.", "thinking": "6*7 = 42"}
    encoded = encode(sample, tiny_tokenizer, GPT_OSS_STYLE, train_on_inputs=False)
    trained = trained_text(tiny_tokenizer, encoded)
    assert "analysis<|message|>6*7=42<|end|>" in trained.replace(" ", "")  # the trace and the reply are trained
    assert "final<|message|>42.<|end|>" in trained.replace(" ", "")
    assert "What is 6" not in trained


def test_split_thinking_takes_the_trace_out_of_the_reply():
    row = {"messages": [ROW["messages"][0],
                        {"role": "assistant", "content": "<think>\n7 added six times\n</think>\n\nIt is 42."}]}
    sample = normalise(row, DatasetSpec(path="x.jsonl", type="messages", split_thinking=True))
    assert sample.messages[1] == ("assistant", "It is 42.") and sample.thinking == ((1, "7 added six times"),)
    plain = normalise(row, DatasetSpec(path="x.jsonl", type="messages"))
    assert plain.thinking == () and plain.messages[1][1].startswith("<think>")  # without it the reply is as written


def test_a_trace_that_is_not_text_is_a_malformed_row_and_a_system_turn_keeps_indices():
    row = {"messages": [ROW["messages"][0], {"role": "assistant", "content": "42.", "reasoning_content": ["x"]}]}
    with pytest.raises(Malformed, match="turn 1 'reasoning_content' is a list, not text"):
        normalise(row, DatasetSpec(path="x.jsonl", type="messages"))
    sample = normalise({**ROW, "system": "Be brief."}, DatasetSpec(path="x.jsonl", type="messages"))
    assert sample.messages[0] == ("system", "Be brief.") and sample.thinking[0][0] == 2
    assert sample.as_dicts()[2]["reasoning_content"].startswith("Six sevens")


def test_axolotls_gpt_oss_thinking_dataset_keys_validate():
    request = parse_request({"base_model": "org/base", "datasets": [
        {"path": "HuggingFaceH4/Multilingual-Thinking", "type": "chat_template", "field_thinking": "thinking",
         "template_thinking_key": "thinking"}]})
    assert request.datasets[0].field_thinking == "thinking" and request.datasets[0].type == "messages"
