"""Encoded samples on disk, and the cache of them under $FACTORY_HOME/cache/encoded (or a request's
dataset_prepared_path), keyed by everything that decides them.

A cache entry is a folder: token ids (int32), trained-token mask (uint8) and row offsets, written
chunk by chunk as the data is encoded and read back memory-mapped, so neither side holds the data in
memory. It holds every sample in load order (after de-duplication) with the datasets' reports. The
key hashes the data files' contents, each dataset's options, the tokenizer's files, the chat template,
the masking option and any added tokens. The seeded split, a contamination drop, sequence_len and
min_sample_len are applied after the cache, so changing them reuses the tokenisation.

A run's own samples are that entry's files linked into its folder with the rows it trains and
evaluates on, each cut to sequence_len: no copy of the tokens. Training reads them through `Samples`,
a sample at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from factory.data.chat import IGNORE, Encoded

if TYPE_CHECKING:
    import numpy as np

VERSION = 2  # bump when encoding changes what it produces
STALE_S = 86_400  # a cache entry's temporary folder this old belongs to no live writer
BLOCK = 1 << 16  # rows per step of the whole-data passes below: their scratch memory is one block's tokens
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")


@dataclass
class EncodedArrays:
    """Encoded samples, compact: every sample's ids end to end (int32), which of them are trained, and
    where each sample starts. A million samples fit in a few hundred MB instead of many GB of lists."""
    ids: "np.ndarray"
    trained: "np.ndarray"
    offsets: "np.ndarray"  # len(samples) + 1

    @staticmethod
    def of(samples: list[Encoded]) -> "EncodedArrays":
        import numpy as np

        if not samples:
            return EncodedArrays.concat([])
        lengths = np.fromiter((len(e.input_ids) for e in samples), dtype=np.int64, count=len(samples))
        offsets = np.zeros(len(samples) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate([np.asarray(e.input_ids, dtype=np.int32) for e in samples])
        trained = np.concatenate([np.asarray(e.labels, dtype=np.int64) for e in samples]) != IGNORE
        return EncodedArrays(ids, trained, offsets)

    @staticmethod
    def concat(parts: list["EncodedArrays"]) -> "EncodedArrays":
        import numpy as np

        if not parts:
            return EncodedArrays(np.zeros(0, np.int32), np.zeros(0, np.bool_), np.zeros(1, np.int64))
        shifts = np.cumsum([0] + [int(p.offsets[-1]) for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + k for p, k in zip(parts, shifts)])
        return EncodedArrays(np.concatenate([p.ids for p in parts]), np.concatenate([p.trained for p in parts]),
                             offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> "np.ndarray":
        import numpy as np

        return np.diff(self.offsets)

    def select(self, rows: list[int]) -> "EncodedArrays":
        """These samples only, in this order, compact."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        starts, lengths = self.offsets[rows], self.offsets[rows + 1] - self.offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        at = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])  # each kept token's old index
        return EncodedArrays(self.ids[at], self.trained[at], offsets)

    def trained_counts(self, lengths: "np.ndarray | None" = None) -> "np.ndarray":
        """Trained tokens per sample, over its first `lengths` tokens (default: all of them)."""
        import numpy as np

        starts = self.offsets[:-1]
        ends = starts + (self.lengths if lengths is None else np.asarray(lengths, dtype=np.int64))
        out = np.zeros(len(self), dtype=np.int64)
        for b in range(0, len(self), BLOCK):  # a block at a time: a prefix sum of all tokens is 8 bytes each
            lo, hi = int(self.offsets[b]), int(self.offsets[min(b + BLOCK, len(self))])
            cum = np.zeros(hi - lo + 1, dtype=np.int64)
            np.cumsum(self.trained[lo:hi], out=cum[1:])
            out[b:b + BLOCK] = cum[ends[b:b + BLOCK] - lo] - cum[starts[b:b + BLOCK] - lo]
        return out

    def to_list(self) -> list[Encoded]:
        import numpy as np

        labels = np.where(self.trained, self.ids, IGNORE).tolist()
        ids = self.ids.tolist()
        bounds = self.offsets.tolist()
        return [Encoded(ids[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:])]


ENTRY_FILES = ("ids.i32", "trained.u8", "offsets.npy", "meta.json")


def save_selection(folder: Path, entry: Path, template: str, cut: "np.ndarray", train_rows: "np.ndarray",
                   eval_rows: "np.ndarray") -> None:
    """A run's samples without a copy of the tokens: the cache entry's files linked into the run's folder
    (copied across file systems), and which rows train and evaluate, each cut to its entry of `cut`.
    The folder appears whole or not at all."""
    import shutil

    import numpy as np

    from factory.base import interrupt

    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with interrupt.partial(tmp):
        for name in ENTRY_FILES:
            try:
                os.link(entry / name, tmp / name)
            except OSError:  # another file system (a dataset_prepared_path elsewhere)
                shutil.copyfile(entry / name, tmp / name)
        np.savez(tmp / "selection.npz", template=np.array(template), cut=np.asarray(cut, np.int64),
                 train_rows=np.asarray(train_rows, np.int64), eval_rows=np.asarray(eval_rows, np.int64))
        shutil.rmtree(folder, ignore_errors=True)  # the data stage ran again
        os.rename(tmp, folder)


def load_template(folder: Path) -> str:
    import numpy as np

    with np.load(folder / "selection.npz", allow_pickle=False) as sel:
        return str(sel["template"])


def load_selection(folder: Path) -> tuple[str, EncodedArrays, "np.ndarray", "np.ndarray", "np.ndarray"]:
    """A run's template, its linked entry (memory-mapped), the cut of each entry row, and its train and eval rows."""
    import numpy as np

    _, entry = open_entry(folder)
    with np.load(folder / "selection.npz", allow_pickle=False) as sel:
        return str(sel["template"]), entry, sel["cut"], sel["train_rows"], sel["eval_rows"]


class Samples(Sequence[Encoded]):
    """Some rows of a memory-mapped entry, each cut to its length: a sample is read from disk when it is
    asked for, so training holds the bins it is batching, not the data (a file larger than RAM trains)."""

    def __init__(self, entry: EncodedArrays, rows: "np.ndarray", cut: "np.ndarray | None" = None):
        import numpy as np

        self.entry = entry
        rows = np.asarray(rows, dtype=np.int64)
        self.starts = entry.offsets[:-1][rows]
        self.lengths = (entry.lengths if cut is None else np.asarray(cut, dtype=np.int64))[rows]  # tokens each

    @staticmethod
    def of(samples: list[Encoded]) -> "Samples":
        import numpy as np

        return Samples(EncodedArrays.of(samples), np.arange(len(samples)))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):  # an int: slices would copy what this class exists not to copy
        import numpy as np

        if not -len(self) <= i < len(self):
            raise IndexError(i)
        a = int(self.starts[i])
        ids = np.asarray(self.entry.ids[a:a + int(self.lengths[i])])
        return Encoded(ids.tolist(), np.where(self.entry.trained[a:a + len(ids)], ids, IGNORE).tolist())

    @property
    def tokens(self) -> int:
        return int(self.lengths.sum())


def load(folder: Path) -> tuple[str, Samples, Samples]:
    """A run's template and its train and eval samples, read lazily from the linked entry."""
    template, entry, cut, train_rows, eval_rows = load_selection(folder)
    return template, Samples(entry, train_rows, cut), Samples(entry, eval_rows, cut)


def cache_key(datasets: list[tuple[dict, list[Path]]], tokenizer_dir: Path, template: str, train_on_inputs: bool,
              added_tokens: dict | None = None) -> str:
    """The key of everything that decides the encoded samples: each dataset's options (without its
    path: the same bytes elsewhere are the same data) and its files' contents, the tokenizer's files,
    the template, the masking option and any added tokens."""
    from factory.base.filehash import sha256_of

    h = hashlib.sha256(json.dumps({"version": VERSION, "template": template, "train_on_inputs": train_on_inputs,
                                   **({"added_tokens": added_tokens} if added_tokens else {}),
                                   "datasets": [{k: v for k, v in spec.items() if k != "path"} for spec, _ in datasets]},
                                  sort_keys=True, default=str).encode())
    for name in TOKENIZER_FILES:
        p = Path(tokenizer_dir) / name
        if p.is_file():
            h.update(name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    for i, (_, files) in enumerate(datasets):
        h.update(f"\x1cdataset {i}".encode())
        for f in files:
            h.update(b"\x1d" + sha256_of(f).encode())
    return h.hexdigest()[:32]


class CacheWriter:
    """Appends encoded chunks to files in a temporary folder beside the entry; done() moves the folder
    into place whole, so a reader never sees half an entry, and an interrupted run leaves none."""

    def __init__(self, final: Path):
        import secrets
        import shutil
        import time

        self.final = final
        self.tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")  # two workers, one key
        self.tmp.mkdir(parents=True)
        for stale in final.parent.glob(f".{final.name}.tmp-*"):  # left by a writer killed outright a day ago
            if stale != self.tmp and time.time() - stale.stat().st_mtime > STALE_S:
                shutil.rmtree(stale, ignore_errors=True)
        self.ids, self.trained = open(self.tmp / "ids.i32", "wb"), open(self.tmp / "trained.u8", "wb")  # noqa: SIM115
        self.lengths: list = []

    def add(self, part: EncodedArrays) -> None:
        import numpy as np

        part.ids.astype(np.int32, copy=False).tofile(self.ids)
        part.trained.view(np.uint8).tofile(self.trained)
        self.lengths.append(part.lengths)

    def done(self, meta: dict) -> EncodedArrays:
        import numpy as np

        self.ids.close()
        self.trained.close()
        offsets = np.zeros(sum(map(len, self.lengths)) + 1, dtype=np.int64)
        if self.lengths:
            np.cumsum(np.concatenate(self.lengths), out=offsets[1:])
        np.save(self.tmp / "offsets.npy", offsets)
        (self.tmp / "meta.json").write_text(json.dumps({"version": VERSION, **meta}))
        try:
            os.rename(self.tmp, self.final)
        except OSError:  # another run wrote the same entry first: theirs is the same data
            self.abort()
        return open_entry(self.final)[1]

    def abort(self) -> None:
        import shutil

        for f in (self.ids, self.trained):
            f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_entry(path: Path) -> tuple[dict, EncodedArrays]:
    """A cache entry's meta (template, datasets' reports) and its samples, memory-mapped.
    Raises OSError or ValueError when it is missing or unreadable."""
    import numpy as np

    meta = json.loads((path / "meta.json").read_text())
    if meta.get("version") != VERSION:
        raise ValueError(f"cache entry {path.name} is of another version")
    offsets = np.load(path / "offsets.npy", allow_pickle=False)
    n = int(offsets[-1])
    for name, size in (("ids.i32", 4 * n), ("trained.u8", n)):
        if (path / name).stat().st_size != size:
            raise ValueError(f"cache entry {path.name}: {name} is truncated")
    if n == 0:
        return meta, EncodedArrays(np.zeros(0, np.int32), np.zeros(0, np.bool_), offsets)
    ids = np.memmap(path / "ids.i32", dtype=np.int32, mode="r", shape=(n,))
    trained = np.memmap(path / "trained.u8", dtype=np.uint8, mode="r", shape=(n,)).view(np.bool_)
    return meta, EncodedArrays(ids, trained, offsets)


def cache_path(key: str, root: str | Path | None = None) -> Path:
    """Where the encoded samples of key live: under root (a request's dataset_prepared_path) or the factory's cache."""
    from factory.base.home import factory_home

    return Path(root).expanduser() / key if root else factory_home() / "cache" / "encoded" / key
