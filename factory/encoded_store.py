"""Encoded samples on disk (an .npz of token ids, trained-token mask and row offsets), and the cache
of them under $FACTORY_HOME/cache/encoded, keyed by everything that decides them.

The key hashes the samples themselves (after loading, mixing, de-duplication, the seeded split and
any contamination drop: so data content, dataset options and seed are all in it), the tokenizer's
files, the chat template and the masking option. sequence_len is applied after the cache, so a
change of it reuses the tokenisation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from factory import atomic
from factory.chat import IGNORE, Encoded
from factory.formats import Sample

VERSION = 1  # bump when encoding changes what it produces
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

    def trained_counts(self, lengths: "np.ndarray | None" = None) -> "np.ndarray":
        """Trained tokens per sample, over its first `lengths` tokens (default: all of them)."""
        import numpy as np

        cum = np.concatenate([[0], np.cumsum(self.trained, dtype=np.int64)])
        starts = self.offsets[:-1]
        return cum[starts + (self.lengths if lengths is None else lengths)] - cum[starts]

    def take(self, rows: "np.ndarray", lengths: "np.ndarray | None" = None) -> "EncodedArrays":
        """These rows, in this order, each cut to its entry of `lengths` (default: whole)."""
        import numpy as np

        rows = np.asarray(rows, dtype=np.int64)
        keep = (self.lengths if lengths is None else np.asarray(lengths, dtype=np.int64))[rows] if len(rows) else \
            np.zeros(0, np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(keep, out=offsets[1:])
        where = np.repeat(self.offsets[:-1][rows] - offsets[:-1], keep) + np.arange(int(offsets[-1]))
        return EncodedArrays(self.ids[where], self.trained[where], offsets)

    def split(self, n: int) -> tuple["EncodedArrays", "EncodedArrays"]:
        """The first n samples and the rest, as views of these arrays (no copy of the tokens)."""
        cut = int(self.offsets[n])
        return (EncodedArrays(self.ids[:cut], self.trained[:cut], self.offsets[:n + 1]),
                EncodedArrays(self.ids[cut:], self.trained[cut:], self.offsets[n:] - cut))

    def to_list(self) -> list[Encoded]:
        import numpy as np

        labels = np.where(self.trained, self.ids, IGNORE).tolist()
        ids = self.ids.tolist()
        bounds = self.offsets.tolist()
        return [Encoded(ids[a:b], labels[a:b]) for a, b in zip(bounds, bounds[1:])]


def save(path: Path, template: str, train: EncodedArrays, evalset: EncodedArrays) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    import numpy as np

    arrays = {f"{name}_{part}": getattr(data, part) for name, data in (("train", train), ("eval", evalset))
              for part in ("ids", "trained", "offsets")}
    atomic.write_with(path, lambda f: np.savez(f, template=np.array(template), **arrays))


def load_arrays(path: Path) -> tuple[str, EncodedArrays, EncodedArrays]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        sets = [EncodedArrays(data[f"{n}_ids"], data[f"{n}_trained"], data[f"{n}_offsets"]) for n in ("train", "eval")]
        return str(data["template"]), sets[0], sets[1]


def load(path: Path) -> tuple[str, list[Encoded], list[Encoded]]:
    template, train, evalset = load_arrays(path)
    return template, train.to_list(), evalset.to_list()


def cache_key(train: list[Sample], evalset: list[Sample], tokenizer_dir: Path, template: str,
              train_on_inputs: bool, added_tokens: dict | None = None) -> str:
    h = hashlib.sha256(json.dumps({"version": VERSION, "template": template, "train_on_inputs": train_on_inputs,
                                   **({"added_tokens": added_tokens} if added_tokens else {})},
                                  sort_keys=True).encode())
    for name in TOKENIZER_FILES:
        p = Path(tokenizer_dir) / name
        if p.is_file():
            h.update(name.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    for split, samples in (("train", train), ("eval", evalset)):
        h.update(b"\x1c" + split.encode())
        for s in samples:
            h.update((b"T" if s.text is not None else b"M") + s.key().encode("utf-8", "surrogatepass") + b"\x1d")
    return h.hexdigest()[:32]


def cache_path(key: str, root: str | Path | None = None) -> Path:
    """Where the encoded samples of key live: under root (a request's dataset_prepared_path) or the factory's cache."""
    from factory.home import factory_home

    return Path(root).expanduser() / f"{key}.npz" if root else factory_home() / "cache" / "encoded" / f"{key}.npz"
