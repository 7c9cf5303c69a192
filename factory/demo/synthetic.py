"""The demo's own instruction data: topic and sentiment questions a tiny model learns in minutes.

Every item is (instruction, answer). Sentences are fresh combinations of a small vocabulary, and
items are split into train and held-out by a hash of the instruction, so a held-out question is
never seen in training: the demo's eval measures generalisation, not recall.
"""

from __future__ import annotations

import hashlib
import random

TOPICS = {
    "sports": "goal team match striker coach league score stadium referee season player tennis",
    "food": "pasta soup bread recipe oven spicy dinner salad cheese garlic kitchen dessert",
    "weather": "rain storm sunny cloudy wind forecast snow thunder humid cold breeze fog",
    "music": "guitar song album concert melody drums singer piano chorus band rhythm lyrics",
}
POSITIVE = "great wonderful excellent lovely amazing delightful superb pleasant brilliant fantastic"
NEGATIVE = "terrible awful boring horrible dreadful poor disappointing bland rude broken"
FILLERS = "the a this that was very really quite today again so and it we our".split()


def _sentence(rng: random.Random, content: list[str], k: int) -> str:
    words = rng.sample(content, k) + rng.sample(FILLERS, 3)
    rng.shuffle(words)
    return " ".join(words)


def _topic(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(sorted(TOPICS))
    text = _sentence(rng, TOPICS[name].split(), rng.randint(2, 4))
    return f"What is this text about? {text}", name


def _sentiment(rng: random.Random) -> tuple[str, str]:
    positive = rng.random() < 0.5
    pool = (POSITIVE if positive else NEGATIVE).split()
    text = _sentence(rng, pool, 2) + " " + _sentence(rng, rng.choice(list(TOPICS.values())).split(), 2)
    return f"Is this review positive or negative? {text}", "positive" if positive else "negative"


TASKS = {"topic": _topic, "sentiment": _sentiment}


def is_held_out(instruction: str, fraction: float = 0.2) -> bool:
    """Deterministic split by content: the same question is always on the same side."""
    h = int.from_bytes(hashlib.sha256(instruction.encode()).digest()[:8], "big")
    return (h % 10_000) < fraction * 10_000


def generate(n: int, *, held_out: bool, seed: int = 0) -> list[dict[str, str]]:
    """n unique alpaca rows {instruction, input, output} from one side of the split."""
    rng = random.Random(seed)
    names = sorted(TASKS)
    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    while len(rows) < n:
        question, answer = TASKS[names[len(rows) % len(names)]](rng)
        if question in seen or is_held_out(question) != held_out:
            continue
        seen.add(question)
        rows.append({"instruction": question, "input": "", "output": answer})
    return rows


def corpus_for_tokenizer(seed: int = 0) -> list[str]:
    """Text the demo tokenizer is trained on: the task wording and every vocabulary word."""
    rows = generate(500, held_out=False, seed=seed + 1)
    vocab = " ".join([*TOPICS.values(), POSITIVE, NEGATIVE, " ".join(FILLERS), " ".join(TOPICS)])
    return [r["instruction"] + " " + r["output"] for r in rows] + [vocab] * 20
