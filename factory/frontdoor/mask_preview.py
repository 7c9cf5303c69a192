"""The label mask made visible before any compute: the first rows of a request's data as the model will
see them through its chat template, split into trained and masked runs of tokens."""

from __future__ import annotations

import html
from itertools import islice

from factory.request.config import Request


def preview(request: Request, hub, rows: int = 3, bounded: bool = False) -> list[tuple[str, list[tuple[str, bool]]]]:
    """For each of the first rows: (its label, [(text, trained)] runs), exactly the tokens and labels training uses;
    a preference row is two sequences, the prompt with the chosen answer and with the rejected one.

    bounded (a stranger's preview): the template renders in a child process within render_bounds' limits."""
    import contextlib

    from transformers import AutoTokenizer

    from factory.data.chat import encode, resolve_template
    from factory.data.data import DatasetReport, load_samples
    from factory.hub.choose import model_folder
    from factory.data.render_bounds import BoundedRenderer

    folder, _ = model_folder(request.base_model, hub, request.revision_of_model,
                             files=["*.json", "tokenizer*", "*.jinja", "*.model", "*.txt"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    template = resolve_template(request.chat_template, tokenizer)
    render = BoundedRenderer(tokenizer, template) if bounded else None
    out = []
    with render or contextlib.nullcontext():
        if request.rl:
            return _pair_rows(request, hub, tokenizer, template, render, rows)
        for i, sample in enumerate(islice(load_samples(request.datasets[0], hub, DatasetReport("preview")), rows), 1):
            out.append((f"row {i}", _runs(tokenizer, encode(sample, tokenizer, template, request.train_on_inputs, render))))
    return out


def _pair_rows(request: Request, hub, tokenizer, template: str, render, rows: int):
    """The first usable rows of a preference dataset: prompt (masked), then each answer (trained)."""
    from factory.data.chat import in_process
    from factory.data.data import dataset_files, read_rows
    from factory.data.formats import Malformed
    from factory.data.pair_data import tokenise
    from factory.data.pairs import read

    spec = request.datasets[0]
    paths, _ = dataset_files(spec, hub)
    out = []
    for n, row in enumerate(read_rows(paths[0]), 1):
        try:
            if isinstance(row, Malformed):
                raise row
            pair = read(row, spec)
        except Malformed:
            continue
        t = tokenise(pair, tokenizer, render or in_process(tokenizer, template))
        prompt = tokenizer.decode(t.prompt)
        if t.rejected is None:
            out.append((f"row {n}: {'desirable' if t.label else 'undesirable'}",
                        [(prompt, False), (tokenizer.decode(t.chosen), True)]))
        else:
            out.append((f"row {n}: prompt + chosen", [(prompt, False), (tokenizer.decode(t.chosen), True)]))
            out.append((f"row {n}: prompt + rejected", [(prompt, False), (tokenizer.decode(t.rejected), True)]))
        if len({label.split(":")[0] for label, _ in out}) >= rows:
            break
    return out


def _runs(tokenizer, enc) -> list[tuple[str, bool]]:
    """The sample's tokens as runs of text, each trained or masked."""
    from factory.data.chat import IGNORE

    runs: list[tuple[str, bool]] = []
    for token, label in zip(enc.input_ids, enc.labels):
        text, trained = tokenizer.decode([token]), label != IGNORE
        if runs and runs[-1][1] == trained:
            runs[-1] = (runs[-1][0] + text, trained)
        else:
            runs.append((text, trained))
    return runs


def as_html(rows: list[tuple[str, list[tuple[str, bool]]]]) -> str:
    parts = ['<div class="mask-preview">']
    for label, runs in rows:
        spans = "".join(f'<span class="{"trained" if t else "masked"}">{html.escape(text)}</span>' for text, t in runs)
        parts.append(f'<div class="row"><div class="row-label">{html.escape(label)}</div><pre>{spans}</pre></div>')
    parts.append("</div>")
    return "".join(parts)
