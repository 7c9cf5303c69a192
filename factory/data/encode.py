"""Tokenise many samples with label masks at the tokenizer's batch speed, on every core.

The masks are chat.encode's (prefix rendering, the reference) but cost linear time in the number of
turns: each conversation is rendered once more with its assistant replies swapped for markers, which
locates every reply in the real render; the text a template adds around a reply (its end-of-turn) is
learned once per template by comparing with the prefix method on probe conversations. A template that
only writes content out (template_writes) is rendered once, with the markers: putting the replies back
gives its render. A row whose render the markers cannot explain, and every row of a template whose turn
shape is not the same on all probes, is encoded the prefix way (and counted).
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import chain, islice
from operator import eq, itemgetter
from typing import TYPE_CHECKING, Callable, Iterator

from factory.base import interrupt
from factory.data.chat import assistant_spans
from factory.request.config import Request
from factory.data.encoded_store import EncodedArrays
from factory.base.errors import UserError
from factory.data.formats import Sample
from factory.data.row_chunks import CHUNK, Chunk, Tally, judge
from factory.data.row_chunks import chunks as chunks_of
from factory.data.render_bounds import MEMORY, chunk_seconds, limit_memory
from factory.data.template_writes import content_only_written

if TYPE_CHECKING:
    from factory.hub.protocol import Hub

CHUNK_MEMORY = 2 * MEMORY  # a bounded worker's memory above its size at start: a chunk of rows, rendered and tokenised
MARK = "\ue000{}\ue001"  # private-use characters: no template writes them
_START, _END = itemgetter(0), itemgetter(1)
PROBES = [
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "It is 4."}],
    [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi there"},
     {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a colour\nand a fruit"},
     {"role": "assistant", "content": "Blue.\nA pear, ripe."}],
    [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"}, {"role": "user", "content": "Three"},
     {"role": "assistant", "content": "Four, five"}, {"role": "user", "content": "Six?"},
     {"role": "assistant", "content": "Seven."}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b c"}, {"role": "user", "content": "d"}],
]


@dataclass(frozen=True)
class Shape:
    """What the prefix method counts around a reply's content: before it, and after it mid-way and at the end."""
    lead: str
    mid: str
    last: str


def renderer(tokenizer, template: str) -> Callable[[list[list[dict]]], list[str]]:
    """Renders a batch of conversations exactly as apply_chat_template does, without its per-call
    overhead: the same compiled template and arguments (plain role/content messages need none of its
    conversions, and test_encode compares the result with apply_chat_template's)."""
    from transformers.utils import chat_template_utils as ctu

    special = dict(tokenizer.special_tokens_map)  # what apply_chat_template passes to the template
    compile_ = getattr(ctu, "_compile_jinja_template", None)
    if compile_ is None:  # another transformers: its public path, slower
        def render_public(conversations: list[list[dict]]) -> list[str]:
            return ctu.render_jinja_template(conversations=conversations, chat_template=template,
                                             add_generation_prompt=False, **special)[0]
        return render_public
    compiled = compile_(template)
    # Template.render merges the environment's globals into a fresh dict on every call (a fifth of the
    # render time here); one merged dict, copied per row, gives the template the same names.
    base = {**compiled.globals, **special, "tools": None, "documents": None, "add_generation_prompt": False}

    def render(conversations: list[list[dict]]) -> list[str]:
        out = []
        for c in conversations:
            ctx = compiled.new_context({**base, "messages": c}, shared=True)
            out.append(compiled.environment.concat(compiled.root_render_func(ctx)))
        return out
    return render


_MARKS = [MARK.format(i) for i in range(512)]


def _mark(i: int) -> str:
    return _MARKS[i] if i < len(_MARKS) else MARK.format(i)


def _marked(turns: tuple[tuple[str, str], ...]) -> list[dict]:
    """The conversation as the template's messages, each assistant reply replaced by its marker."""
    return [{"role": r, "content": _mark(i) if r == "assistant" else c} for i, (r, c) in enumerate(turns)]


def _put_back(marked: str, turns: tuple[tuple[str, str], ...]) -> tuple[str, list[tuple[int, int, int]]] | None:
    """The marked render with each reply put back in its marker's place, and (message index, start, end)
    of each reply in it; None when a marker is missing or out of order."""
    pieces, found, pos, shift = [], [], 0, 0
    for i, (role, content) in enumerate(turns):
        if role != "assistant":
            continue
        tag = _mark(i)
        at = marked.find(tag, pos)
        if at < 0:
            return None
        pieces += [marked[pos:at], content]
        found.append((i, at + shift, at + shift + len(content)))
        shift += len(content) - len(tag)
        pos = at + len(tag)
    pieces.append(marked[pos:])
    return "".join(pieces), found


def _locate(full: str, marked: str, turns: tuple[tuple[str, str], ...]) -> list[tuple[int, int, int]] | None:
    """Where each assistant reply is in full, or None when the marked render, with the replies put back,
    is not exactly full (the template transforms or tests the content)."""
    out = _put_back(marked, turns)
    return out[1] if out is not None and out[0] == full else None


def _written_back(marked: str, turns: tuple[tuple[str, str], ...]) -> tuple[str, list[tuple[int, int, int]]] | None:
    """The render itself, for a template that only writes content out (template_writes): the marked render
    with the replies put back, when every marker was written exactly once and no text holds the markers'
    characters (then none is left over)."""
    out = _put_back(marked, turns)
    return out if out is not None and MARK[0] not in out[0] else None


def learn_shape(tokenizer, template: str) -> Shape | None:
    """The template's turn shape, when it is the same on every probe the template accepts; else None."""
    render = renderer(tokenizer, template)
    leads, mids, lasts = set(), set(), set()
    for conv in PROBES:
        try:
            full, reference = assistant_spans(tokenizer, template, conv)
            turns = tuple((m["role"], m["content"]) for m in conv)
            again, marked = render([conv, _marked(turns)])
        except UserError:
            return None  # the template rewrites history: only the prefix method can refuse it properly
        except Exception:  # noqa: BLE001 - a template may refuse a probe (a system turn, say)
            continue
        located = _locate(again, marked, turns)
        if again != full or located is None:
            return None
        for (i, s, e), (a, b) in zip(located, reference):
            if a > s or b < e:
                return None
            leads.add(full[a:s])
            (lasts if i == len(conv) - 1 else mids).add(full[e:b])
    if len(leads) != 1 or len(mids) != 1 or len(lasts) != 1:
        return None
    return Shape(leads.pop(), mids.pop(), lasts.pop())


def _fast_spans(full: str, located: list[tuple[int, int, int]] | None, n_turns: int,
                shape: Shape) -> list[tuple[int, int]] | None:
    """Each reply's span with what the template adds around it (the shape), or None when the text there is
    not the shape's."""
    if located is None:
        return None
    spans = []
    for i, s, e in located:
        trail = shape.last if i == n_turns - 1 else shape.mid
        a, b = s - len(shape.lead), e + len(trail)
        if a < 0 or full[a:s] != shape.lead or full[e:b] != trail:
            return None
        spans.append((a, b))
    return spans


def _mark_trained(trained, base: int, offsets, spans: list[tuple[int, int]]) -> None:
    """A token is trained when its characters overlap a span and it has any. `offsets` is the row's list of
    (start, end), or its Encoding: then each token's offsets are read only where a bisection looks (a few
    per span, instead of a Python tuple for every token of the row).

    Zero-width tokens: the tokenizers library gives a token no characters only when a normalizer inserts
    characters before the first one (offsets (0, 0)), and such a token ends before any span starts; a list
    of offsets is checked for them anyway (the reference method, and tokenizers without an Encoding)."""
    if not isinstance(offsets, list):
        n, at, token_of = len(offsets), offsets.token_to_chars, offsets.char_to_token
        try:
            for a, b in spans:  # tokens ending after a and starting before b (offsets only grow)
                i = token_of(a)  # the first token holding character a is the first ending after a
                if i is None or (i and at(i - 1)[1] > a):  # a in a gap the tokens skip: bisect
                    i = bisect_right(range(n), a, key=lambda k: at(k)[1])
                j = n if at(n - 1)[1] <= b else token_of(b)  # the first token starting at b, when one does
                if j is None or (j < n and at(j)[0] != b) or (0 < j < n and at(j - 1)[0] >= b):
                    j = bisect_left(range(n), b, lo=i, key=lambda k: at(k)[0])
                trained[base + i:base + j] = True
            return
        except TypeError:  # a token with no characters in the text (None): the whole list, below
            offsets = offsets.offsets
    for a, b in spans:
        i = bisect_right(offsets, a, key=_END)
        j = bisect_left(offsets, b, lo=i, key=_START)
        if i >= j:
            continue
        trained[base + i:base + j] = True
        starts, ends = zip(*offsets[i:j])
        if any(map(eq, starts, ends)):  # a zero-width token inside the span: not trained
            for k in range(i, j):
                if offsets[k][0] == offsets[k][1]:
                    trained[base + k] = False


def encode_batch(samples: list[Sample], tokenizer, template: str, train_on_inputs: bool,
                 shape: Shape | None) -> tuple[EncodedArrays, int]:
    """The samples encoded (compact arrays), and how many conversations needed the prefix method."""
    import numpy as np

    render = renderer(tokenizer, template)
    texts: list[str] = [s.text if s.text is not None else "" for s in samples]
    spans: list[list[tuple[int, int]] | None] = [None] * len(samples)
    chats = [i for i, s in enumerate(samples) if s.text is None]
    one_render = shape is not None and content_only_written(template)  # the marked render is enough
    slow = 0
    if chats:
        try:
            if train_on_inputs:
                rendered = render([samples[i].as_dicts() for i in chats])
            elif one_render:
                rendered = render([_marked(samples[i].messages) for i in chats])
            elif shape is not None:
                rendered = render([c for i in chats for c in (samples[i].as_dicts(), _marked(samples[i].messages))])
            else:
                rendered = None
        except Exception:  # noqa: BLE001 - a row the template refuses: find it below, row by row
            rendered = None
        for k, i in enumerate(chats):
            turns = samples[i].messages
            if train_on_inputs:
                texts[i] = rendered[k] if rendered is not None else _render_one(render, samples[i].as_dicts())
                continue
            found = None
            if samples[i].thinking:  # the trace renders outside the reply: the prefix method spans both
                pass
            elif rendered is not None and one_render:
                out = _written_back(rendered[k], turns)
                if out is not None:
                    texts[i] = out[0]
                    found = _fast_spans(out[0], out[1], len(turns), shape)
            elif rendered is not None:
                texts[i] = rendered[2 * k]
                found = _fast_spans(texts[i], _locate(texts[i], rendered[2 * k + 1], turns), len(turns), shape)
            if found is None:
                slow += 1
                texts[i], found = _prefix(tokenizer, template, samples[i].as_dicts())
            spans[i] = found
    all_ids, all_offsets = _tokenize(tokenizer, texts, with_offsets=not train_on_inputs and bool(chats))
    eos = tokenizer.eos_token_id
    if eos is not None:  # raw text ends with the end-of-sequence token, and learns it
        all_ids = [ids + [eos] if s.text is not None else ids for ids, s in zip(all_ids, samples)]
    bounds = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, all_ids), dtype=np.int64, count=len(all_ids)), out=bounds[1:])
    ids = np.fromiter(chain.from_iterable(all_ids), dtype=np.int32, count=int(bounds[-1]))
    trained = np.zeros(len(ids), dtype=np.bool_)
    for i, found in enumerate(spans):
        if found is None:  # raw text, or train_on_inputs: every token
            trained[bounds[i]:bounds[i + 1]] = True
        else:
            _mark_trained(trained, int(bounds[i]), all_offsets[i], found)
    return EncodedArrays(ids, trained, bounds), slow


def _tokenize(tokenizer, texts: list[str], with_offsets: bool) -> tuple[list[list[int]], list | None]:
    """Ids and (when asked) each row's character offsets: a list of (start, end), or its Encoding, straight
    from the Rust tokenizer when there is one (the transformers wrapper adds a third to the time for the
    same result, which test_encode checks)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=with_offsets)
        return enc["input_ids"], enc["offset_mapping"] if with_offsets else None
    if not with_offsets:  # no offsets tracked at all: a third less tokenizer time
        fast = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in fast(texts, add_special_tokens=False)], None
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    return [e.ids for e in encodings], encodings  # offsets read per span from each Encoding (_mark_trained)


def _refused(exc: Exception, conv: list[dict]) -> UserError:
    return UserError(f"the chat template refused a conversation ({exc}); roles: {', '.join(m['role'] for m in conv)}")


def _render_one(render, conv: list[dict]) -> str:
    try:
        return render([conv])[0]
    except Exception as exc:  # noqa: BLE001 - the template's own refusal, shown to the user
        raise _refused(exc, conv) from None


def _prefix(tokenizer, template: str, conv: list[dict]):
    try:
        return assistant_spans(tokenizer, template, conv)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _refused(exc, conv) from None


# ---- every core --------------------------------------------------------------------------------

_JOB: tuple | None = None  # (tokenizer, template, train_on_inputs, shape, dataset specs), inherited by forked workers
LEARN = "learn"  # the shape, when a bounded worker learns it itself (a stranger's template never renders in the parent)


def _work(chunk: Chunk) -> tuple[list | None, EncodedArrays, int, bool]:
    """A chunk's rows judged (row_chunks.judge) and its usable ones encoded: compact, cheap to send back. Also
    how many rows took the prefix way, and whether the template's fast path applies."""
    global _JOB
    tokenizer, template, train_on_inputs, shape, specs = _JOB
    if shape == LEARN:
        shape = None if train_on_inputs else learn_shape(tokenizer, template)
        _JOB = (tokenizer, template, train_on_inputs, shape, specs)
    try:
        outcomes, samples = judge(chunk, specs[chunk.dataset] if specs else None)
        encoded, slow = encode_batch(samples, tokenizer, template, train_on_inputs, shape)
    except MemoryError:
        raise UserError(f"chat-template-sandbox: encoding {len(chunk.items):,} rows used more memory than allowed "
                        f"({CHUNK_MEMORY >> 20} MB; the chat template may build huge text); it was stopped") from None
    return outcomes, encoded, slow, shape is not None or train_on_inputs


def _worker_signals(bounded: bool = False) -> None:
    """Ctrl-C reaches the whole process group: the parent stops the pool, workers print no traceback. A
    SIGTERM handler inherited from the parent (a queue worker's graceful stop) would keep a worker alive
    when the pool terminates it: workers die on SIGTERM. A bounded worker (a stranger's template) also has
    its memory limited."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if bounded:
        limit_memory(CHUNK_MEMORY)


def default_processes() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def encode_all(samples: list[Sample], tokenizer, template: str, train_on_inputs: bool,
               processes: int | None = None, progress: Callable[[int, int, float], None] | None = None
               ) -> tuple[EncodedArrays, dict]:
    """Every sample of a list encoded, in order, held in memory (encode_stream does the work)."""
    parts: list[EncodedArrays] = []
    chunks = (Chunk("samples", [s.item() for s in samples[i:i + CHUNK]])
              for i in range(0, len(samples), CHUNK))
    stats = encode_stream(chunks, tokenizer, template, train_on_inputs, lambda _c, _o, encoded: parts.append(encoded),
                          None, processes, progress, total=len(samples))
    return EncodedArrays.concat(parts), stats


def encode_datasets(request: Request, hub: Hub | None, reports: list, tokenizer, template: str,
                    sink: Callable[[EncodedArrays], None], resolved: list | None = None,
                    progress: Callable[[int, int, float], None] | None = None, total: int | None = None,
                    bounded: bool = False) -> dict:
    """Every dataset of the request read, judged, de-duplicated and encoded on request.dataset_processes
    processes, each chunk's kept samples handed to sink in load order: what data.stream into
    encode_stream gives, with the parsing and normalising on every core (row_chunks). Fills `reports`.
    bounded: a stranger's job (see encode_stream)."""
    tally = Tally(request, reports)
    return encode_stream(chunks_of(request, hub, reports, resolved), tokenizer, template, request.train_on_inputs,
                         lambda chunk, outcomes, encoded: sink(tally.take(chunk, outcomes, encoded)),
                         request.datasets, request.dataset_processes, progress, total, bounded)


def encode_stream(chunks: Iterator[Chunk], tokenizer, template: str, train_on_inputs: bool,
                  sink: Callable[[Chunk, list | None, EncodedArrays], None], specs: list | None = None,
                  processes: int | None = None, progress: Callable[[int, int, float], None] | None = None,
                  total: int | None = None, bounded: bool = False) -> dict:
    """Every chunk judged and encoded, in order, over `processes` worker processes (default: every core),
    each handed to sink(chunk, outcomes, encoded) as it is done (`specs`: the datasets' specs, to
    normalise rows with). Memory stays bounded: at most two chunks per process are in flight.

    bounded (a stranger's template, which is code): nothing renders in this process; worker processes do it
    all, even for small data, each chunk within render_bounds.chunk_seconds and CHUNK_MEMORY, and a chunk
    that runs over stops the stage with a UserError.

    progress(done, total, rows_per_s) is called about once a second; total is the caller's estimate of
    the rows (it grows to what was done when the estimate was short). Returns stats: processes used,
    whether the template's fast path applied, rows encoded the prefix way, seconds."""
    shape = LEARN if bounded else None if train_on_inputs else learn_shape(tokenizer, template)
    processes = max(1, min(processes or default_processes(), default_processes()))  # never more than the cores
    head = list(islice(chunks, 5))
    if sum(len(c.items) for c in head) < 4 * CHUNK:  # a worker pool costs more than it saves on small data
        processes = 1
    slow, done, t0, shown, fast = 0, 0, time.monotonic(), 0.0, True

    def collect(chunk: Chunk, result) -> None:
        nonlocal slow, done, shown, fast
        outcomes, encoded, n_slow, fast_here = result
        sink(chunk, outcomes, encoded)
        slow, done, fast = slow + n_slow, done + len(chunk.items), fast and fast_here
        now = time.monotonic()
        if progress is not None and now - shown >= 1.0:
            shown = now
            progress(done, max(total or 0, done), done / max(now - t0, 1e-9))

    _encode_chunks(chain(head, chunks), processes, (tokenizer, template, train_on_inputs, shape, specs), collect,
                   bounded)
    if progress is not None:
        progress(done, done, done / max(time.monotonic() - t0, 1e-9))
    return {"processes": processes, "template_fast_path": fast, "prefix_rows": slow,
            "seconds": round(time.monotonic() - t0, 3)}


def _result(pending, rows: int, bounded: bool):
    """A worker's answer, with a safe point every quarter second while it works (a stop ends the pool);
    bounded, within chunk_seconds(rows) of when the wait began (the chunks before it are done by then)."""
    deadline = time.monotonic() + chunk_seconds(rows) if bounded else None
    while not pending.ready():
        pending.wait(0.25)
        interrupt.safe_point()
        if deadline is not None and time.monotonic() > deadline:
            raise UserError(f"chat-template-sandbox: rendering and tokenising {rows:,} rows took more than "
                            f"{chunk_seconds(rows):g} s (the chat template may loop); the data stage was stopped")
    return pending.get()


def _encode_chunks(chunks: Iterator[Chunk], processes: int, job: tuple, collect, bounded: bool = False) -> None:
    import gc
    import multiprocessing
    from collections import deque

    global _JOB
    _JOB = job
    # The rows' many small objects trigger collections that would scan every object alive now (the
    # tokenizer, the libraries) each time: frozen, they are skipped (a tenth of the time on 100k rows,
    # bench/data_prep.py), and forked workers leave their pages shared.
    thaw = gc.get_freeze_count() == 0
    gc.freeze()
    try:
        if processes == 1 and not bounded:
            for chunk in chunks:
                interrupt.safe_point()
                collect(chunk, _work(chunk))
            return
        with multiprocessing.get_context("fork").Pool(processes, initializer=_worker_signals,
                                                      initargs=(bounded,)) as pool:
            pending: deque = deque()
            for chunk in chunks:  # Pool.imap would read the whole input ahead: submit as results come back
                pending.append((chunk, pool.apply_async(_work, (chunk,))))
                if len(pending) >= 2 * processes:
                    chunk_, result = pending.popleft()
                    collect(chunk_, _result(result, len(chunk_.items), bounded))
            while pending:
                chunk_, result = pending.popleft()
                collect(chunk_, _result(result, len(chunk_.items), bounded))
    finally:
        _JOB = None
        if thaw:
            gc.unfreeze()
