"""Label masks on real tokenizers and chat templates from ../shared/data.

Two independent checks: (1) transformers' own `return_assistant_tokens_mask` on templates with
{% generation %} tags; (2) decoding every trained span gives back exactly an assistant reply plus
its end-of-turn marker, for ChatML/Qwen, Phi-3, Llama-3, Mistral and Zephyr templates.
"""

from __future__ import annotations

import json

import pytest

from factory.data.chat import BUILTIN_TEMPLATES, IGNORE, encode, resolve_template
from factory.base.errors import UserError
from factory.data.formats import Sample

MARKERS = ["<|im_start|>", "<|im_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
           "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]

CONVERSATIONS = [
    (("user", "What is 2+2?"), ("assistant", "It is 4.")),
    (("system", "You are terse."), ("user", "Hi there"), ("assistant", "Hello."),
     ("user", "Name a colour"), ("assistant", "Blue, like the sky.")),
]


@pytest.fixture(scope="module")
def phi3_tokenizer(shared):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(shared / "tokenizers" / "phi-3-mini")
    tok.add_special_tokens({"additional_special_tokens": MARKERS})
    return tok


def flat(path) -> str:
    """chujiezheng templates are re-indented for reading: strip indents and newlines before use."""
    return "".join(line.strip() for line in path.read_text().splitlines())


def trained_spans(tok, enc) -> list[str]:
    spans, cur = [], []
    for t, lab in zip(enc.input_ids, enc.labels):
        if lab != IGNORE:
            cur.append(t)
        elif cur:
            spans.append(cur)
            cur = []
    if cur:
        spans.append(cur)
    return [tok.decode(s) for s in spans]


def squash(s: str) -> str:
    return "".join(s.split())


def templates(shared, tok):
    qwen = json.loads((shared / "tokenizers/qwen2.5/tokenizer_config.json").read_text())["chat_template"]
    phi3 = json.loads((shared / "tokenizers/phi-3-mini/tokenizer_config.json").read_text())["chat_template"]
    d = shared / "chat_templates/chujiezheng"
    return {
        "chatml": (flat(d / "chatml.jinja"), "<|im_end|>"),
        "qwen2.5": (qwen, "<|im_end|>"),
        "llama3": (flat(d / "llama-3-instruct.jinja"), "<|eot_id|>"),
        "mistral": (flat(d / "mistral-instruct.jinja"), tok.eos_token),
        "zephyr": (flat(d / "zephyr.jinja"), tok.eos_token),
        "phi3": (phi3, "<|end|>"),
    }


@pytest.mark.parametrize("family", ["chatml", "qwen2.5", "llama3", "mistral", "zephyr", "phi3"])
def test_trained_spans_are_replies_with_end_of_turn(shared, phi3_tokenizer, family):
    tok = phi3_tokenizer
    template, marker = templates(shared, tok)[family]
    for conv in CONVERSATIONS:
        if family == "mistral" and conv[0][0] == "system":
            conv = conv[1:]  # this Mistral template has no system role
        enc = encode(Sample(messages=conv), tok, template, train_on_inputs=False)
        replies = [c for r, c in conv if r == "assistant"]
        spans = trained_spans(tok, enc)
        assert len(spans) == len(replies), (family, spans)
        for span, reply in zip(spans, replies):
            assert squash(span).startswith(squash(reply)), (family, span, reply)
            assert marker in span, f"{family}: end-of-turn {marker!r} not trained in {span!r}"
            # nothing from the next turn's header leaks into the trained span
            assert squash(span.split(marker)[0]) == squash(reply), (family, span)


def test_matches_transformers_assistant_mask(phi3_tokenizer):
    tok = phi3_tokenizer
    tagged = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
        "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>\n' }}{% endgeneration %}"
        "{% else %}{{ m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    for conv in CONVERSATIONS:
        sample = Sample(messages=conv)
        ref = tok.apply_chat_template(sample.as_dicts(), chat_template=tagged, tokenize=True, return_dict=True,
                                      return_assistant_tokens_mask=True)
        enc = encode(sample, tok, tagged, train_on_inputs=False)
        assert enc.input_ids == list(ref["input_ids"])
        assert [int(lab != IGNORE) for lab in enc.labels] == list(ref["assistant_masks"])


def test_matches_transformers_mask_on_smollm3_template(shared, phi3_tokenizer):
    tok = phi3_tokenizer
    template = (shared / "tokenizers/smollm3/chat_template.jinja").read_text()
    conv = CONVERSATIONS[1]
    sample = Sample(messages=conv)
    ref = tok.apply_chat_template(sample.as_dicts(), chat_template=template, tokenize=True, return_dict=True,
                                  return_assistant_tokens_mask=True)
    enc = encode(sample, tok, template, train_on_inputs=False)
    assert enc.input_ids == list(ref["input_ids"])
    ours = [i for i, lab in enumerate(enc.labels) if lab != IGNORE]
    theirs = [i for i, m in enumerate(ref["assistant_masks"]) if m]
    # SmolLM3's {% generation %} also wraps the '<|im_start|>assistant' header, which the generation
    # prompt supplies at inference; ours trains the reply and its end-of-turn, not the header.
    assert set(ours) <= set(theirs)
    header = tok.decode([enc.input_ids[i] for i in sorted(set(theirs) - set(ours))])
    assert squash(header) == squash("<|im_start|>assistant\n") * 2, header
    assert tok.decode([enc.input_ids[i] for i in ours]).count("<|im_end|>") == 2  # the model learns to stop


def test_train_on_inputs_and_completion(tiny_tokenizer):
    sample = Sample(messages=CONVERSATIONS[0])
    enc = encode(sample, tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], train_on_inputs=True)
    assert enc.labels == enc.input_ids
    enc = encode(Sample(text="plain text"), tiny_tokenizer, BUILTIN_TEMPLATES["chatml"], train_on_inputs=False)
    assert enc.labels == enc.input_ids and enc.input_ids[-1] == tiny_tokenizer.eos_token_id


def test_builtin_templates_mask_replies(tiny_tokenizer):
    for name, template in BUILTIN_TEMPLATES.items():
        conv = CONVERSATIONS[0]
        enc = encode(Sample(messages=conv), tiny_tokenizer, template, train_on_inputs=False)
        text = tiny_tokenizer.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE])
        assert squash(text).startswith(squash("It is 4.")), (name, text)
        assert "What" not in text, name


def test_template_resolution(tiny_tokenizer):
    assert resolve_template("llama3", tiny_tokenizer) == BUILTIN_TEMPLATES["llama3"]
    assert resolve_template(None, tiny_tokenizer) == tiny_tokenizer.chat_template
    assert resolve_template("{{ messages }}", tiny_tokenizer) == "{{ messages }}"
    with pytest.raises(UserError, match="neither a built-in"):
        resolve_template("vicuna", tiny_tokenizer)


def test_history_rewriting_template_is_refused(tiny_tokenizer):
    # renders only the last message: earlier renders are not prefixes of the full render
    with pytest.raises(UserError, match="renders earlier turns differently"):
        encode(Sample(messages=CONVERSATIONS[1]), tiny_tokenizer, "{{ messages[-1]['content'] }}", False)
