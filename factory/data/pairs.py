"""Preference rows read into one shape: a prompt (the conversation up to the answer) and a chosen and a rejected
answer, or, for KTO, one answer and whether it is desirable.

The shapes people publish are told apart by their columns, not by a name per shape: TRL's prompt/chosen/rejected
(text or message lists, the prompt explicit or shared by two full conversations), Axolotl's dpo/orpo/kto prompt
strategies (chatml.*, llama3.*, chat_template.*, user_defined: prompt, input, question or instruction; chosen or
chosen_response; a system column), LLaMA-Factory's ShareGPT pairs (conversations plus a chosen and a rejected
turn), HH-RLHF transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") and KTO's prompt/completion/label
(LLaMA-Factory's KTO rows: messages and a label).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.data.formats import MESSAGES_ROLES, SHAREGPT_ROLES, Malformed, Sample, kind
from factory.request.config import DatasetSpec

PROMPT_COLUMNS = ("prompt", "input", "question", "instruction")
CHOSEN_COLUMNS = ("chosen", "chosen_response")
REJECTED_COLUMNS = ("rejected", "rejected_response")
COMPLETION_COLUMNS = ("completion", "response", "output", "messages")  # messages: LLaMA-Factory's KTO rows
ROLES = {**SHAREGPT_ROLES, **MESSAGES_ROLES}


@dataclass(frozen=True)
class Pair:
    """One preference row: the prompt turns, the chosen answer and the rejected one (None for a KTO row, whose
    answer is `chosen` and whose label says whether it is desirable). raw_prompt: a prompt already formatted as
    text (prompt_format), rendered without the chat template."""

    prompt: tuple[tuple[str, str], ...]
    chosen: str
    rejected: str | None
    label: bool | None = None
    raw_prompt: str | None = None

    def sample(self) -> Sample:
        """The pair as one conversation, for the contamination check and de-duplication: every text it trains on."""
        answers = (("assistant", self.chosen),) + ((("assistant", self.rejected),) if self.rejected is not None else ())
        prompt = (("user", self.raw_prompt),) if self.raw_prompt is not None else self.prompt
        return Sample(messages=prompt + answers + ((("label", str(self.label)),) if self.label is not None else ()))


def _column(row: dict, given: str | None, candidates: tuple[str, ...], what: str) -> str:
    if given:
        if given not in row:
            raise Malformed(f"missing field '{given}' (the row has: {', '.join(map(str, row)) or 'no fields'})")
        return given
    for c in candidates:
        if c in row:
            return c
    raise Malformed(f"no {what} column ({' or '.join(candidates)}; the row has: {', '.join(map(str, row))}); "
                    f"name it with field_{what}")


def _roles(spec: DatasetSpec) -> tuple[dict[str, str], str, str]:
    roles = dict(ROLES)
    if spec.roles:
        roles.update({src: dst for dst, srcs in spec.roles.items() for src in srcs})
    mapping = spec.message_property_mappings or {}
    return roles, mapping.get("role", "role"), mapping.get("content", "content")


def _turn(value: object, spec: DatasetSpec, where: str) -> tuple[str, str]:
    roles, role_key, content_key = _roles(spec)
    if not isinstance(value, dict):
        raise Malformed(f"{where} is {kind(value)}, not a message")
    role = value.get(role_key, value.get("from"))
    content = value.get(content_key, value.get("value"))
    if not isinstance(role, str) or role not in roles:
        raise Malformed(f"{where} has no known role ({role!r}; map it with `roles:`)")
    if not isinstance(content, str):
        raise Malformed(f"{where} content is {kind(content)}, not text")
    return roles[role], content


def _turns(value: object, spec: DatasetSpec, where: str) -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [("user", value)]
    if not isinstance(value, list):
        raise Malformed(f"'{where}' is {kind(value)}, not text or a list of messages")
    return [_turn(m, spec, f"{where}[{i}]") for i, m in enumerate(value)]


HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


def transcript(text: str) -> list[tuple[str, str]] | None:
    """An HH-RLHF transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as turns; None when the text is not one."""
    if not text.startswith("\n\nHuman: "):
        return None
    parts = HH_TURN.split(text)
    return [("user" if who == "Human" else "assistant", said) for who, said in zip(parts[1::2], parts[2::2])]


def _answer(value: object, spec: DatasetSpec, where: str) -> tuple[list[tuple[str, str]], str]:
    """(turns before the answer, the answer): text is the answer itself; a message is it; a list of messages ends
    with it (what comes before is the conversation it answers)."""
    if isinstance(value, str):
        turns = transcript(value)
        if turns is None:
            return [], value
    elif isinstance(value, dict):
        return [], _answer_text(_turn(value, spec, where), where)
    else:
        turns = _turns(value, spec, where)
    if not turns:
        raise Malformed(f"'{where}' is an empty conversation")
    return turns[:-1], _answer_text(turns[-1], where)


def _answer_text(turn: tuple[str, str], where: str) -> str:
    role, content = turn
    if role != "assistant":
        raise Malformed(f"'{where}' ends with a {role} turn, not the assistant's answer")
    return content


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def _system(row: dict, spec: DatasetSpec) -> list[tuple[str, str]]:
    value = row.get(spec.field_system)
    return [("system", value)] if isinstance(value, str) and value.strip() and not spec.drop_system_message else []


def read_pair(row: object, spec: DatasetSpec) -> Pair:
    """One row of a preference dataset (type: preference) as a Pair; raises Malformed naming the problem."""
    if not isinstance(row, dict):
        raise Malformed(f"row is {kind(row)}, not an object")
    chosen_col = _column(row, spec.field_chosen, CHOSEN_COLUMNS, "chosen")
    rejected_col = _column(row, spec.field_rejected, REJECTED_COLUMNS, "rejected")
    before_c, chosen = _answer(row[chosen_col], spec, chosen_col)
    before_r, rejected = _answer(row[rejected_col], spec, rejected_col)
    prompt_col = spec.field_prompt or next((c for c in (*PROMPT_COLUMNS, "conversations", "messages") if c in row), None)
    raw = None
    if spec.prompt_format:  # user_defined: the prompt as raw text
        if prompt_col is None:
            raise Malformed("no prompt column for prompt_format; name it with field_prompt")
        raw = _formatted(spec.prompt_format, prompt=row[prompt_col], system=row.get(spec.field_system) or "")
        prompt: list[tuple[str, str]] = []
    elif prompt_col is not None:  # an explicit prompt; the answers' own earlier turns (ultra's) repeat it
        prompt = _system(row, spec) + _turns(row[prompt_col], spec, prompt_col)
    else:  # implicit: two full conversations, the prompt is what they share
        if before_c != before_r:
            raise Malformed(f"'{chosen_col}' and '{rejected_col}' answer different conversations and there is no "
                            "prompt column; give the prompt in its own column (field_prompt)")
        prompt = _system(row, spec) + before_c
    if raw is None and (not prompt or prompt[-1][0] == "assistant"):
        raise Malformed("the prompt has no user turn to answer" if not prompt else "the prompt ends with an assistant turn")
    if spec.chosen_format:
        chosen = _formatted(spec.chosen_format, chosen=chosen)
    if spec.rejected_format:
        rejected = _formatted(spec.rejected_format, rejected=rejected)
    for text, col in ((chosen, chosen_col), (rejected, rejected_col)):
        if _blank(text):
            raise Malformed(f"empty '{col}'")
    return Pair(tuple(prompt), chosen, rejected, raw_prompt=raw)


def read_completion(row: object, spec: DatasetSpec) -> Pair:
    """One row of a KTO dataset (type: kto): a prompt, a completion and a boolean label."""
    if not isinstance(row, dict):
        raise Malformed(f"row is {kind(row)}, not an object")
    label = row.get("label")
    if not isinstance(label, bool):
        raise Malformed(f"field 'label' is {kind(label)}, not true or false" if "label" in row else
                        "missing field 'label' (true: a desirable completion, false: an undesirable one)")
    completion_col = _column(row, spec.field_chosen, COMPLETION_COLUMNS, "completion")
    before, completion = _answer(row[completion_col], spec, completion_col)
    prompt_col = spec.field_prompt or next((c for c in PROMPT_COLUMNS if c in row), None)
    raw = None
    if spec.prompt_format:
        if prompt_col is None:
            raise Malformed("no prompt column for prompt_format; name it with field_prompt")
        raw = _formatted(spec.prompt_format, prompt=row[prompt_col], system=row.get(spec.field_system) or "")
        prompt: list[tuple[str, str]] = []
    else:
        prompt = _system(row, spec) + (_turns(row[prompt_col], spec, prompt_col) if prompt_col else before)
        if not prompt or prompt[-1][0] == "assistant":
            raise Malformed("the prompt has no user turn to answer")
    if _blank(completion):
        raise Malformed(f"empty '{completion_col}'")
    return Pair(tuple(prompt), completion, None, label=label, raw_prompt=raw)


def _formatted(fmt: str, **values: object) -> str:
    for name, value in values.items():
        if not isinstance(value, str):
            raise Malformed(f"'{name}' is {kind(value)}, not text")
    return fmt.format(**values)


def read(row: object, spec: DatasetSpec) -> Pair:
    """A row of a preference or KTO dataset; a pair whose two answers are the same is no preference."""
    pair = read_completion(row, spec) if spec.type == "kto" else read_pair(row, spec)
    if pair.rejected is not None and pair.chosen.strip() == pair.rejected.strip():
        raise SamePair("chosen and rejected are the same answer")
    return pair


class SamePair(Malformed):
    """A pair whose chosen equals its rejected: no preference to learn (dropped and counted apart)."""
