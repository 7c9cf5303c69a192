"""The chat engine: streaming equals one-shot generation for a seed, cancel stops at once, LRU eviction,
concurrent requests; and `factory chat` in a terminal."""

from __future__ import annotations

import shutil
import threading

import pytest

from factory.frontdoor.chat_engine import ChatEngine, Settings
from factory.base.errors import UserError

HELLO = [{"role": "user", "content": "What is this text about? guitar song"}]


@pytest.fixture
def models(tiny_base, tmp_path):
    """Three model folders (copies of the tiny base with different weights' seeds are not needed)."""
    out = []
    for name in ("a", "b", "c"):
        dest = tmp_path / name
        shutil.copytree(tiny_base, dest)
        out.append(str(dest))
    return out


def test_streamed_chunks_concatenate_to_the_one_shot_reply(models):
    engine = ChatEngine(device="cpu")
    sampled = Settings(temperature=1.0, top_p=0.95, max_new_tokens=40, seed=7)
    gen = engine.stream(models[0], HELLO, sampled)
    chunks = list(gen)
    assert len(chunks) > 1 and gen.stopped == "done"
    assert "".join(chunks) == engine.generate(models[0], HELLO, sampled)
    assert "".join(engine.stream(models[0], HELLO, sampled)) == "".join(chunks)  # the seed reproduces it
    greedy = Settings(temperature=0, max_new_tokens=20)
    assert "".join(engine.stream(models[0], HELLO, greedy)) == engine.generate(models[0], HELLO, greedy)


def test_cancel_stops_within_a_token_or_two(models):
    engine = ChatEngine(device="cpu")
    gen = engine.stream(models[0], HELLO, Settings(temperature=1.0, max_new_tokens=400, seed=1))
    it = iter(gen)
    next(it)
    gen.cancel()
    rest = list(it)
    assert gen.stopped == "cancelled" and gen.tokens < 400
    assert gen.tokens - gen.tokens_at_cancel <= 2, (gen.tokens, gen.tokens_at_cancel, rest)


def test_a_consumer_that_walks_away_stops_the_generation(models):
    engine = ChatEngine(device="cpu")
    gen = engine.stream(models[0], HELLO, Settings(temperature=1.0, max_new_tokens=400, seed=1))
    it = iter(gen)
    next(it)
    it.close()  # e.g. the browser tab closed
    assert gen.stopped == "cancelled" and gen.tokens < 400


def test_a_third_model_evicts_the_least_recently_used(models):
    engine = ChatEngine(device="cpu", max_models=2)
    engine.load(models[0])
    engine.load(models[1])
    engine.load(models[0])  # a is used again: b is now the least recently used
    engine.load(models[2])
    assert engine.loaded() == [models[0], models[2]]


def test_concurrent_requests_each_get_their_whole_reply(models):
    engine = ChatEngine(device="cpu")
    settings = Settings(temperature=1.0, max_new_tokens=30, seed=3)
    alone = engine.generate(models[0], HELLO, settings)
    replies: list[str] = []

    def ask():
        replies.append("".join(engine.stream(models[0], HELLO, settings)))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == [alone] * 3  # one generation at a time, each with its own seed


def test_limits_and_bad_input_are_user_errors(models):
    engine = ChatEngine(device="cpu", token_limit=64)
    with pytest.raises(UserError, match="max_new_tokens"):
        engine.stream(models[0], HELLO, Settings(max_new_tokens=65))
    with pytest.raises(UserError, match="temperature"):
        engine.stream(models[0], HELLO, Settings(temperature=-1))
    with pytest.raises(UserError, match="ends with the user's message"):
        engine.stream(models[0], [], Settings(max_new_tokens=8))
    with pytest.raises(UserError, match="not in the local hub|nor a model folder"):
        engine.load("nobody/nothing")
    slow = ChatEngine(device="cpu", time_limit_s=0.0)
    gen = slow.stream(models[0], HELLO, Settings(max_new_tokens=200, seed=1))
    list(gen)
    assert gen.stopped == "time limit" and gen.tokens <= 2


def test_default_pair_is_the_real_demo_finetune_once_it_exists(tmp_path):
    from factory.frontdoor.chat_engine import default_models
    from factory.hub.local import LocalHub
    from factory.demo.real_model import FINETUNED_ID

    hub = LocalHub(tmp_path / "hub")
    assert default_models(hub) == ["factory/tiny-llama-demo-instruct"]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    hub.publish(FINETUNED_ID, tmp_path / "m", "test")
    assert default_models(hub) == [FINETUNED_ID, "factory/tiny-llama-demo-instruct"]
