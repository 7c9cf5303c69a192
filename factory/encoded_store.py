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
import os
import tempfile
from pathlib import Path

from factory.chat import IGNORE, Encoded
from factory.formats import Sample

VERSION = 1  # bump when encoding changes what it produces
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")


def _arrays(samples: list[Encoded], prefix: str) -> dict:
    import numpy as np

    lengths = np.fromiter((len(e.input_ids) for e in samples), dtype=np.int64, count=len(samples))
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.fromiter((t for e in samples for t in e.input_ids), dtype=np.int32, count=int(offsets[-1]))
    trained = np.fromiter((lab != IGNORE for e in samples for lab in e.labels), dtype=np.bool_, count=int(offsets[-1]))
    return {f"{prefix}_ids": ids, f"{prefix}_trained": trained, f"{prefix}_offsets": offsets}


def _samples(data, prefix: str) -> list[Encoded]:
    import numpy as np

    ids, trained, offsets = data[f"{prefix}_ids"], data[f"{prefix}_trained"], data[f"{prefix}_offsets"]
    labels = np.where(trained, ids, IGNORE)
    bounds = offsets.tolist()
    return [Encoded(ids[a:b].tolist(), labels[a:b].tolist()) for a, b in zip(bounds, bounds[1:])]


def save(path: Path, template: str, train: list[Encoded], evalset: list[Encoded]) -> None:
    """Written whole or not at all (a reader never sees half a file)."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, template=np.array(template), **_arrays(train, "train"), **_arrays(evalset, "eval"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> tuple[str, list[Encoded], list[Encoded]]:
    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        return str(data["template"]), _samples(data, "train"), _samples(data, "eval")


def cache_key(train: list[Sample], evalset: list[Sample], tokenizer_dir: Path, template: str,
              train_on_inputs: bool) -> str:
    h = hashlib.sha256(json.dumps({"version": VERSION, "template": template, "train_on_inputs": train_on_inputs},
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


def cache_path(key: str) -> Path:
    from factory.home import factory_home

    return factory_home() / "cache" / "encoded" / f"{key}.npz"
