"""The Space's guided fields: read out of the request's YAML, and written back into it with comments kept.

The YAML is the one source of truth; a field is a view of one key. A field the user changed since the
page last filled it is written into the YAML (a round trip through ruamel.yaml, so comments, blank lines
and key order survive); fields the page filled itself are never written back, so a field that lags the
editor by one refresh cannot undo what the user is typing there.
"""

from __future__ import annotations

import io

from factory.admission.yaml_guard import load_untrusted
from factory.base.errors import UserError

FIELDS = [  # (label, request key, kind): kind is "text", "number", or the choices of a dropdown
    ("Base model", "base_model", "text"), ("Dataset (Hub id)", "datasets.0.path", "text"),
    ("Format", "datasets.0.type", ["alpaca", "sharegpt", "messages", "completion", "preference", "kto"]),
    ("Method", "rl", [("supervised (SFT)", ""), ("DPO", "dpo"), ("IPO", "ipo"), ("ORPO", "orpo"), ("SimPO", "simpo"),
                      ("KTO", "kto")]),  # preference methods need Format preference (kto: or kto)
    ("Adapter", "adapter", ["lora", "qlora"]), ("Epochs", "num_epochs", "number"),
    ("Learning rate", "learning_rate", "number"), ("Sequence length", "sequence_len", "number"),
    ("Target repo", "hub_model_id", "text"),
    ("GGUF export", "export.gguf.0", [("none", ""), ("Q8_0 (near-lossless)", "q8_0"), ("Q4_K_M (small)", "q4_k_m"),
                                      ("Q5_K_M", "q5_k_m"), ("F16", "f16")]),  # the first type; more in the YAML
]


def read(text: str) -> list | None:
    """Each field's value in the YAML (None where the key is absent); None when the text is not a mapping."""
    try:
        data = load_untrusted(text or "") or {}  # the editor holds a stranger's text: no bombs here either
    except UserError:
        return None
    if not isinstance(data, dict):
        return None
    return [normal(kind, key, _get(data, key)) for _, key, kind in FIELDS]


def normal(kind, key: str, value):
    """A field's value as the YAML should hold it: '' is absent, whole numbers are ints (but a learning
    rate stays a float), and text the page cannot read as a number is kept as written."""
    if value in (None, ""):
        return None
    if kind == "number":
        try:
            number = float(value)
        except (TypeError, ValueError):
            return value
        return int(number) if number.is_integer() and key != "learning_rate" else number
    return value.strip() if isinstance(value, str) else value


def edited(values, synced) -> list[int]:
    """Which fields the user changed since the page last filled them (all that differ from the YAML when
    the page has not filled them yet: synced is None)."""
    if synced is None:
        return list(range(len(FIELDS)))
    return [i for i, (kind, value, was) in enumerate(zip((f[2] for f in FIELDS), values, synced))
            if normal(kind, FIELDS[i][1], value) != was]


def with_edits(text: str, values, synced) -> str | None:
    """The YAML with the fields the user edited since the page filled them (`edited`); None when it is not
    a mapping."""
    which = edited(values, synced)
    return write(text, values, which) if which else text


def write(text: str, values, which: list[int]) -> str | None:
    """The YAML with the fields numbered in `which` set to their values, everything else untouched; the
    same text when they already match; None when the text is not a YAML mapping (the user fixes it first)."""
    current = read(text)
    if current is None:
        return None
    wanted = {i: normal(FIELDS[i][2], FIELDS[i][1], values[i]) for i in which}
    changes = [(FIELDS[i][1], value) for i, value in wanted.items() if value != current[i]]
    if not changes:
        return text
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096  # never fold a long line the user wrote on one
    rt.indent(mapping=2, sequence=4, offset=2)  # "  - path: ..." under its key, as Axolotl's examples write it
    data = rt.load(text or "{}") or {}
    if not isinstance(data, dict):
        return None
    for key, value in changes:
        _set(data, key, value)
    out = io.StringIO()
    rt.dump(data, out)
    return out.getvalue()


def _get(data, key: str):
    for part in key.split("."):
        if isinstance(data, list):
            data = data[int(part)] if part.isdigit() and int(part) < len(data) else None
        elif isinstance(data, dict):
            data = data.get(part)
        else:
            return None
        if data is None:
            return None
    return data


def _set(data, key: str, value) -> None:
    parts = key.split(".")
    node = data
    for part, nxt in zip(parts[:-1], parts[1:]):
        if isinstance(node, list):
            if int(part) >= len(node):
                node.append({})
            node = node[int(part)]
            continue
        if not isinstance(node.get(part), (dict, list)):
            node[part] = [{}] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):  # export.gguf.0: an item of a list
        i = int(last)
        if value is None:
            del node[i:i + 1]
        elif i < len(node):
            node[i] = value
        else:
            node.append(value)
    elif value is None:
        if isinstance(node, dict):
            node.pop(last, None)
    else:
        node[last] = value
