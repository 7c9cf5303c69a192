"""Chat templates and tokenisation with label masks.

Only assistant turns are trained (unless train_on_inputs), each with its end-of-turn token. The
assistant spans are found by rendering growing prefixes of the conversation with the template
itself, so any template works without hand-written markers; a template whose earlier render is
not a prefix of the full render (it rewrites history) is refused with a clear message.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.base.errors import UserError
from factory.data.formats import Sample

IGNORE = -100

BUILTIN_TEMPLATES = {
    "chatml": (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for m in messages %}"
        "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] | trim + '<|eot_id|>' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "zephyr": (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + eos_token + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    "phi3": (
        "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
    ),
    "mistral": (
        "{{ bos_token }}{% set sys = messages[0]['content'] + '\n\n' if messages[0]['role'] == 'system' else '' %}"
        "{% for m in messages if m['role'] != 'system' %}"
        "{% if m['role'] == 'user' %}{{ '[INST] ' + (sys if loop.first else '') + m['content'] + ' [/INST]' }}"
        "{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
}


def resolve_template(requested: str | None, tokenizer) -> str:
    """The Jinja template to use: the request's (a built-in name or Jinja), else the tokenizer's."""
    from factory.request.axolotl import known_template_name, template_choice

    fallback = None
    if requested:
        if requested in BUILTIN_TEMPLATES:
            return BUILTIN_TEMPLATES[requested]
        if "{{" in requested or "{%" in requested:
            return requested
        if not known_template_name(requested):
            raise UserError(f"chat_template '{requested}' is neither a built-in ({', '.join(BUILTIN_TEMPLATES)}), "
                            "an Axolotl template name, nor a Jinja string")
        builtin, fallback = template_choice(requested)
        if builtin:
            return BUILTIN_TEMPLATES[builtin]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.chat_template
    if fallback:
        return BUILTIN_TEMPLATES[fallback]
    raise UserError(
        "the base model's tokenizer has no chat template; set chat_template: in the request "
        f"(one of {', '.join(BUILTIN_TEMPLATES)}, or a Jinja string)"
    )


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def in_process(tokenizer, template: str):
    """render(messages, add_generation_prompt) in this process: the operator's own templates. A stranger's are
    rendered by a render_bounds.BoundedRenderer instead, which takes the same call."""
    def render(messages: list[dict], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    return render


def assistant_spans(tokenizer, template: str, messages: list[dict], render=None) -> tuple[str, list[tuple[int, int]]]:
    """The full rendered text and the character spans of each assistant reply with its end-of-turn."""
    render = render or in_process(tokenizer, template)
    full = render(messages, add_generation_prompt=False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prompt = render(messages[:i], add_generation_prompt=True) if i else ""
        upto = render(messages[: i + 1], add_generation_prompt=False)
        if not full.startswith(prompt) or not upto.startswith(prompt):
            raise UserError(
                "the chat template renders earlier turns differently once later turns exist, so assistant "
                "turns cannot be located; use a built-in chat_template or train_on_inputs: true"
            )
        end = len(prompt)
        limit = min(len(upto), len(full))
        while end < limit and upto[end] == full[end]:
            end += 1
        spans.append((len(prompt), end))
    return full, spans


def encode(sample: Sample, tokenizer, template: str, train_on_inputs: bool, render=None) -> Encoded:
    """Token ids and labels (IGNORE where not trained) for one sample (render: see in_process)."""
    if sample.text is not None:
        ids = tokenizer(sample.text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        return Encoded(ids, list(ids))
    messages = sample.as_dicts()
    full, spans = assistant_spans(tokenizer, template, messages, render)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if train_on_inputs:
        return Encoded(ids, list(ids))
    labels = [IGNORE] * len(ids)
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and any(s < b and e > a for a, b in spans):
            labels[t] = ids[t]
    return Encoded(ids, labels)
