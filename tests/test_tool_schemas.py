"""Tool schemas typed into the Chat tab: checked like any stranger's input, and put where the model reads them."""

from __future__ import annotations

import json

import pytest

from factory.base.errors import UserError
from factory.frontdoor.chat_engine import ChatEngine, Loaded
from factory.frontdoor.tool_schemas import parse

WEATHER = {"name": "get_weather", "description": "The weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
TURN = [{"role": "user", "content": "Weather in Oslo?"}]


def test_a_list_of_functions_or_openais_wrapped_form():
    assert parse("") is None and parse("  \n") is None
    assert parse(json.dumps([WEATHER])) == [WEATHER]
    assert parse(json.dumps({"type": "function", "function": WEATHER})) == [WEATHER]  # one tool, wrapped


@pytest.mark.parametrize("text, words", [
    ("[{", "not JSON (line 1"), ('"get_weather"', "a JSON list"), ("[" + "{},"*40 + "{}]", "a JSON list of at most 32"),
    ('[{"description": "no name"}]', 'tools[0]: each tool is an object with a "name"'),
    ('[{"name": "f", "parameters": []}]', '"parameters" is a JSON schema object'),
    ('[{"name": "' + "x" * 20000 + '"}]', "at most 16 KiB"),
])
def test_what_is_not_a_tool_list_is_refused_with_the_reason(text, words):
    with pytest.raises(UserError, match=words.replace("[", r"\[").replace("(", r"\(")):
        parse(text)


def _rendered(tokenizer, tools, messages=TURN) -> str:
    engine = ChatEngine(device="cpu")
    loaded = Loaded("m", None, None, tokenizer, tokenizer.chat_template)
    return engine._prompt_text(loaded, messages, tools)


def test_a_template_that_takes_tools_gets_them_there(shared):
    from transformers import AutoTokenizer

    qwen = AutoTokenizer.from_pretrained(shared / "tokenizers" / "qwen2.5")
    text = _rendered(qwen, parse(json.dumps([WEATHER])))
    assert "<tools>" in text and '"name": "get_weather"' in text  # Qwen2.5's own tool block
    assert "<tools>" not in _rendered(qwen, None)


def test_a_template_without_tools_gets_them_as_the_system_message_as_the_factory_trains(tiny_tokenizer):
    assert "tools" not in tiny_tokenizer.chat_template
    text = _rendered(tiny_tokenizer, [WEATHER])
    assert "<|im_start|>system\n" + json.dumps([WEATHER]) in text  # the glaive rows' format (field_system: tools)
    with pytest.raises(UserError, match="give tools or a system message, not both"):
        _rendered(tiny_tokenizer, [WEATHER], [{"role": "system", "content": "be brief"}, *TURN])
