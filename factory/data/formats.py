"""Turn one dataset row of a known prompt format into a conversation (or raw text), or say why not.

Formats: alpaca (instruction/input/output, optional system), sharegpt (conversations of
from/value), messages (OpenAI role/content), completion (raw text), and Axolotl's jeopardy
(question/category/answer). Column names come from the request's DatasetSpec so that any dataset
maps without code.
"""

from __future__ import annotations

from dataclasses import dataclass

from factory.request.config import DatasetSpec

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "model": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
    "system": "system",
}
MESSAGES_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system",
                  "human": "user", "gpt": "assistant"}  # Axolotl's chat_template default roles include ShareGPT's


class Malformed(ValueError):
    """A row that cannot be used; the message names the field and the problem.

    `raw` is the row's text when it could not even be parsed (an audit still scans it)."""

    def __init__(self, message: str, raw: str | None = None):
        super().__init__(message)
        self.raw = raw


@dataclass(frozen=True)
class Sample:
    """A normalised row: a conversation of (role, content) turns, or raw text for completion."""

    messages: tuple[tuple[str, str], ...] = ()
    text: str | None = None
    thinking: tuple[tuple[int, str], ...] = ()  # (message index, reasoning trace) of assistant turns that have one
    thinking_key: str = "reasoning_content"  # the message key the chat template reads the trace from

    def key(self) -> str:
        """Exact-duplicate key."""
        if self.text is not None:
            return self.text
        return "\x1e".join(f"{r}\x1f{c}" for r, c in self.messages) + "".join(f"\x1d{i}\x1f{t}" for i, t in self.thinking)

    def as_dicts(self) -> list[dict[str, str]]:
        out = [{"role": r, "content": c} for r, c in self.messages]
        for i, trace in self.thinking:
            out[i][self.thinking_key] = trace
        return out

    def item(self) -> tuple:
        """The sample as plain values for a chunk sent to a worker process (Sample(*item) rebuilds it)."""
        return (self.messages, self.text, self.thinking, self.thinking_key) if self.thinking else (self.messages, self.text)


def kind(value: object) -> str:
    """How a JSON value is named in a message: null, a number, a list, an object."""
    names = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object", str: "text"}
    return names.get(type(value), f"a {type(value).__name__}")


def _blank(text: str) -> bool:
    """Empty or only whitespace: text.strip() == "" without copying the text (a long reply, every row)."""
    return not text or text.isspace()


def _string(row: dict, column: str, *, required: bool) -> str:
    if column not in row or (row[column] is None and not required):
        if required:
            raise Malformed(f"missing field '{column}' (the row has: {', '.join(map(str, row)) or 'no fields'})")
        return ""
    value = row[column]
    if not isinstance(value, str):
        raise Malformed(f"field '{column}' is {kind(value)}, not text")
    return value


def _alpaca(row: dict, spec: DatasetSpec) -> Sample:
    instruction = _string(row, spec.field_instruction, required=True)
    extra = _string(row, spec.field_input, required=False)
    output = _string(row, spec.field_output, required=True)
    system = _string(row, spec.field_system, required=False)
    if _blank(instruction):
        raise Malformed(f"empty '{spec.field_instruction}'")
    if _blank(output):
        raise Malformed(f"empty '{spec.field_output}'")
    prompt = f"{instruction}\n\n{extra}" if not _blank(extra) else instruction
    turns = ((("system", system),) if not _blank(system) else ()) + (("user", prompt), ("assistant", output))
    return Sample(messages=turns)


JEOPARDY_SYSTEM = ("Below is a Jeopardy clue paired with input providing the category of the clue. Write a concise "
                   "response that best answers the clue given the category.")


def _jeopardy(row: dict) -> Sample:
    """Axolotl's `type: jeopardy`: its instruction text as the system turn, the clue and category asked, and
    the answer trained as "what is <answer>"."""
    question = _string(row, "question", required=True)
    category = _string(row, "category", required=False)
    answer = _string(row, "answer", required=True)
    if not question.strip() or not answer.strip():
        raise Malformed("empty 'question'" if not question.strip() else "empty 'answer'")
    prompt = f"{question}\n\n{category}" if category.strip() else question
    return Sample(messages=(("system", JEOPARDY_SYSTEM), ("user", prompt), ("assistant", "what is " + answer)))


def _conversation(row: dict, spec: DatasetSpec, column: str, role_key: str, content_key: str,
                  roles: dict[str, str]) -> Sample:
    if spec.message_property_mappings:
        role_key = spec.message_property_mappings.get("role", role_key)
        content_key = spec.message_property_mappings.get("content", content_key)
    if spec.roles:
        roles = {**roles, **{src: dst for dst, srcs in spec.roles.items() for src in srcs}}
    turns = row.get(column)
    if turns is None:
        raise Malformed(f"missing field '{column}'")
    if not isinstance(turns, list) or not turns:
        raise Malformed(f"field '{column}' is an empty conversation" if turns == [] else
                        f"field '{column}' is {kind(turns)}, not a list of turns")
    out, thinking = [], []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise Malformed(f"turn {i} is {kind(turn)}, not an object")
        role, content = turn.get(role_key), turn.get(content_key)
        if not isinstance(role, str):
            raise Malformed(f"turn {i} has no '{role_key}'")
        if role not in roles:
            raise Malformed(f"turn {i} has unknown role '{role}' (known: {', '.join(sorted(roles))}; map more with `roles:`)")
        if not isinstance(content, str):
            raise Malformed(f"turn {i} '{content_key}' is {kind(content)}, not text")
        if roles[role] == "assistant":
            trace = turn.get(spec.field_thinking or "reasoning_content")
            if spec.split_thinking and trace is None:
                content, trace = _split_thinking(content)
            if trace is not None and not isinstance(trace, str):
                raise Malformed(f"turn {i} '{spec.field_thinking or 'reasoning_content'}' is {kind(trace)}, not text")
            if trace is not None and not _blank(trace):
                thinking.append((len(out), trace))
        if _blank(content):
            raise Malformed(f"turn {i} ({role}) is empty")
        out.append((roles[role], content))
    if not any(r == "assistant" for r, _ in out):
        raise Malformed("no assistant turn (nothing to train on)")
    system = _string(row, spec.field_system, required=False)  # e.g. LLaMA-Factory's `system` or `tools` column
    if not _blank(system) and out[0][0] != "system":
        out.insert(0, ("system", system))
        thinking = [(k + 1, t) for k, t in thinking]
    if spec.drop_system_message:
        kept = [k for k, t in enumerate(out) if t[0] != "system"]
        thinking = [(kept.index(k), t) for k, t in thinking]
        out = [out[k] for k in kept]
    return Sample(messages=tuple(out), thinking=tuple(thinking),
                  thinking_key=spec.template_thinking_key or "reasoning_content")


THINKING_TAGS = (("<think>", "</think>"), ("<reasoning>", "</reasoning>"), ("<|begin_of_thought|>", "<|end_of_thought|>"))


def _split_thinking(content: str) -> tuple[str, str | None]:
    """Axolotl's split_thinking: a reasoning trace between the first pair of known tags is taken out of the reply
    (content, trace); Bespoke's <|begin_of_solution|> tags around the rest are dropped."""
    for start, end in THINKING_TAGS:
        a, b = content.find(start), content.find(end)
        if a != -1 and b > a:
            trace, rest = content[a + len(start):b].strip(), content[b + len(end):].lstrip()
            if "<|begin_of_solution|>" in rest and "<|end_of_solution|>" in rest:
                rest = rest.split("<|begin_of_solution|>", 1)[1].split("<|end_of_solution|>", 1)[0].strip()
            return rest, trace
    return content, None


def normalise(row: object, spec: DatasetSpec) -> Sample:
    """One row to a Sample; raises Malformed with the reason."""
    if not isinstance(row, dict):
        raise Malformed(f"row is {kind(row)}, not an object")
    if spec.type == "alpaca":
        return _alpaca(row, spec)
    if spec.type == "sharegpt":
        return _conversation(row, spec, spec.field_messages or "conversations", "from", "value", SHAREGPT_ROLES)
    if spec.type == "messages":
        return _conversation(row, spec, spec.field_messages or "messages", "role", "content", MESSAGES_ROLES)
    if spec.type == "jeopardy":
        return _jeopardy(row)
    text = _string(row, spec.field or "text", required=True)
    if _blank(text):
        raise Malformed(f"empty '{spec.field or 'text'}'")
    return Sample(text=text)
