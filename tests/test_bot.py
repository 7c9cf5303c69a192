"""The Discord bot, offline: command callbacks called with mocked interactions against a real Store and a
real worker; the checks on their own; every message and embed within Discord's limits; a restart."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path
from unittest.mock import AsyncMock, MagicMock

import discord
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bot/ is run from the checkout, not installed

from bot import render  # noqa: E402
from bot.discord_bot import FactoryBot, discord_token, guild_allowed, is_operator, may_finetune  # noqa: E402
from factory.queue.jobs import Job, Limits, Store  # noqa: E402

USER, OTHER, GUILD = 123456789012, 555555555555, 42


class Thread:
    def __init__(self, name: str):
        self.id, self.name, self.posts = 900 + len(name), name, []

    async def send(self, content=None, embed=None, view=None):
        self.posts.append(embed if embed is not None else content)


class Message:
    def __init__(self, content, view):
        self.content, self.view, self.thread, self.edits = content, view, None, []

    async def create_thread(self, name):
        self.thread = Thread(name)
        return self.thread

    async def edit(self, content=None):
        self.edits.append(content)
        self.content = content


class Channel:
    def __init__(self):
        self.messages: list[Message] = []

    async def send(self, content=None, view=None, embed=None):
        self.messages.append(Message(content, view))
        return self.messages[-1]


def role(name: str, rid: int):
    r = MagicMock()
    r.name, r.id = name, rid
    return r


def interaction(user_id: int = USER, guild_id: int | None = GUILD, roles=(), calls: list | None = None):
    """A MagicMock(spec=discord.Interaction) with AsyncMock responses; `calls` records their order."""
    calls = calls if calls is not None else []
    inter = MagicMock(spec=discord.Interaction)
    inter.user = MagicMock()
    inter.user.id, inter.user.mention, inter.user.roles = user_id, f"<@{user_id}>", list(roles)
    inter.guild_id = guild_id
    inter.channel = Channel()
    inter.response = MagicMock()
    inter.response.defer = AsyncMock(side_effect=lambda **kw: calls.append(("defer", kw)))
    inter.followup = MagicMock()
    sent = Message("", None)

    async def followup(content=None, **kw):
        calls.append(("followup", content, kw))
        return sent

    inter.followup.send = AsyncMock(side_effect=followup)
    inter.calls, inter.sent = calls, sent
    return inter


def private_replies(inter) -> list[str]:
    return [c[1] for c in inter.calls if c[0] == "followup" and c[2].get("ephemeral")]


class Attachment:
    def __init__(self, text: str, filename: str = "request.yaml", size: int | None = None):
        self.filename, self.data = filename, text.encode()
        self.size = len(self.data) if size is None else size
        self.reads = 0

    async def read(self):
        self.reads += 1
        return self.data


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def discord_env(home, monkeypatch):
    from factory.demo import demo
    from factory.hub.local import LocalHub
    from factory.base.progress import Silent

    monkeypatch.setenv("FACTORY_HUB", "local")
    monkeypatch.setenv("FACTORY_DISCORD_NAMESPACE", "factory-discord")
    monkeypatch.setenv("FACTORY_DISCORD_GUILDS", str(GUILD))
    monkeypatch.setenv("FACTORY_DISCORD_OPERATOR_ROLES", "7")
    monkeypatch.delenv("FACTORY_DISCORD_ROLES", raising=False)
    demo.ensure_assets(LocalHub(home / "hub"), Silent())
    return home


def demo_request(**over) -> str:
    from factory.demo import demo

    data = yaml.safe_load(demo.REQUEST.read_text())
    data.update({"hub_model_id": "factory-discord/tiny-demo", "max_steps": 30,
                 "evals": {"tasks": ["factory_demo_heldout"], "limit": 10}, **over})
    return yaml.safe_dump(data)


def test_a_finetune_from_discord_to_the_final_embed(discord_env, db_url):
    from factory.queue.worker import Worker

    store = Store(db_url, Limits(0, 0))
    bot = FactoryBot(store)
    inter = interaction()
    attachment = Attachment(demo_request())
    job = run(bot.finetune(inter, attachment, None, None, "alpaca", "lora", 1.0, 2e-4, None))
    assert inter.calls[0][0] == "defer" and inter.calls[0][1]["ephemeral"]  # answered at once, then validated
    assert job is not None, private_replies(inter)
    assert private_replies(inter) == [f"Job {job} accepted."]
    public = inter.channel.messages[0]
    assert f"job {job}" in public.content and "factory-discord/tiny-demo-d123456789012" in public.content
    assert public.view.children[0].custom_id == f"factory:cancel:{job}"
    thread = public.thread

    worker = threading.Thread(target=Worker(store, "w").run, kwargs={"drain": True})
    worker.start()
    from test_jobs import wait_for  # a timeout on the state, not a timed assertion

    wait_for(lambda: store.get(job).stage == "train" and any(e.kind == "progress" for e in store.events(job)), 300,
             "training")
    run(bot.deliver_once())  # the first bot posts what there is so far, then "restarts"
    first_posts = len(thread.posts)
    restarted = FactoryBot(store)
    restarted.threads[str(thread.id)] = thread  # a restarted bot fetches the thread by id
    worker.join(timeout=600)
    assert store.get(job).status == "succeeded", store.get(job).error
    run(restarted.deliver_once())
    assert run(restarted.deliver_once()) == 0  # nothing twice
    texts = [p for p in thread.posts if isinstance(p, str)]
    assert len(texts) == len(set(texts)) and first_posts < len(thread.posts)
    for stage in ("resolve", "data", "train", "merge", "eval", "card", "publish"):
        assert f"**{stage}** started" in texts
    assert not any(str(discord_env) in t for t in texts)  # the worker's folders are not shown to strangers
    progress = [t for t in texts if t.startswith("train: ")]
    assert 1 <= len(progress) <= 3 and all("loss" in t for t in progress[1:])  # a few per stage, not every step
    final = thread.posts[-1]
    assert isinstance(final, discord.Embed) and "succeeded" in final.title
    assert any("factory_demo_heldout" in f.name for f in final.fields)
    assert any(f.name == "Benchmark contamination" for f in final.fields)


def test_options_cancel_and_the_button_after_a_restart(discord_env, db_url):
    from factory.queue.worker import Worker

    store = Store(db_url, Limits(0, 0))
    bot = FactoryBot(store)
    inter = interaction()
    queued = run(bot.finetune(inter, None, "factory/tiny-llama", "factory/demo-instructions", "alpaca", "lora", 1.0,
                              3e-3, "from-options", 512))
    assert queued is not None, private_replies(inter)
    assert store.get(queued).hub_model_id == "factory-discord/from-options-d123456789012"
    other = interaction(user_id=OTHER)
    run(bot.cancel_job(other, queued))
    assert "only its submitter" in private_replies(other)[0] and store.get(queued).status == "queued"
    mine = interaction()
    run(bot.cancel_job(mine, queued))
    assert store.get(queued).status == "cancelled" and private_replies(mine) == [f"Job {queued}: cancelled."]

    running = run(bot.finetune(interaction(), Attachment(demo_request(max_steps=3000)), None, None, "alpaca", "lora",
                               1.0, 2e-4, None))
    worker = threading.Thread(target=Worker(store, "w").run, kwargs={"drain": True})
    worker.start()
    from test_jobs import wait_for

    wait_for(lambda: store.get(running).stage == "train", 300, "training")
    restarted = FactoryBot(store)  # the button's custom_id carries the job: it works after a restart
    item = run(restarted.CancelButton.from_custom_id(None, None, {"job": str(running)}))
    operator = interaction(user_id=OTHER, roles=[role("factory-ops", 7)])
    run(item.callback(operator))
    assert "stopping at its next step" in private_replies(operator)[0]
    worker.join(timeout=300)
    assert store.get(running).status == "cancelled"


@pytest.mark.parametrize("case", ["policy", "validation", "quota", "role", "guild", "not yaml", "too big"])
def test_refusals_are_private_and_immediate(case, discord_env, db_url, monkeypatch):
    store = Store(db_url, Limits(queued=1 if case == "quota" else 0, per_day=0))
    bot = FactoryBot(store)
    text, attachment, guild = demo_request(), None, GUILD
    if case == "policy":
        text = demo_request(base_model="/etc")
    elif case == "validation":
        text = demo_request() + "lerning_rate: 1\n"
    elif case == "quota":
        store.submit(demo_request(), "discord:123456789012", "discord")
    elif case == "role":
        monkeypatch.setenv("FACTORY_DISCORD_ROLES", "31337")
    elif case == "guild":
        guild = 7
    attachment = Attachment(text, filename="request.txt" if case == "not yaml" else "request.yaml",
                            size=10 * 1024 * 1024 if case == "too big" else None)
    inter = interaction(guild_id=guild)
    assert run(bot.finetune(inter, attachment, None, None, "alpaca", "lora", 1.0, 2e-4, None)) is None
    assert inter.calls[0][0] == "defer"
    replies = private_replies(inter)
    assert replies and all(c[2].get("ephemeral") for c in inter.calls if c[0] == "followup")
    expected = {"policy": "not a repo id", "validation": "did you mean", "quota": "FACTORY_MAX_QUEUED_PER_SUBMITTER",
                "role": "roles allowed to finetune", "guild": "not enabled in this server", "not yaml": ".yaml",
                "too big": "at most 65,536"}[case]
    assert expected in "\n".join(replies), replies
    assert inter.channel.messages == []
    if case == "too big":
        assert attachment.reads == 0  # refused before a byte was read
    assert len(store.list(submitter="discord:123456789012")) == (1 if case == "quota" else 0)


def test_the_checks_themselves(monkeypatch):
    from bot.discord_bot import check_settings
    from factory.base.errors import UserError

    monkeypatch.setenv("FACTORY_DISCORD_GUILDS", "1,2")
    assert guild_allowed(1) and not guild_allowed(3) and not guild_allowed(None)
    monkeypatch.setenv("FACTORY_DISCORD_ROLES", "98,99")
    monkeypatch.setenv("FACTORY_DISCORD_OPERATOR_ROLES", "5")
    check_settings()
    member = MagicMock()
    member.roles = [role("everyone", 1)]
    assert not may_finetune(member) and not is_operator(member)
    member.roles = [role("x", 99)]
    assert may_finetune(member) and not is_operator(member)
    member.roles = [role("ops", 5)]
    assert may_finetune(member) and is_operator(member)
    member.roles = [role("5", 123), role("98", 124)]  # roles *named* like the allowed ids: identity is by id only
    assert not may_finetune(member) and not is_operator(member)
    monkeypatch.setenv("FACTORY_DISCORD_OPERATOR_ROLES", "factory-ops")
    with pytest.raises(UserError, match="FACTORY_DISCORD_OPERATOR_ROLES: factory-ops is not an id"):
        check_settings()
    monkeypatch.setenv("FACTORY_DISCORD_OPERATOR_ROLES", "5")
    monkeypatch.delenv("FACTORY_DISCORD_ROLES")
    member.roles = []
    assert may_finetune(member)
    monkeypatch.delenv("FACTORY_DISCORD_OPERATOR_ROLES")
    assert not is_operator(member)


def test_the_commands_registered_on_start(discord_env, db_url):
    bot = FactoryBot(Store(db_url, Limits(0, 0)))
    payload = {c.name: c.to_dict(bot.tree) for c in bot.tree.get_commands()}  # what tree.sync() would send
    assert set(payload) == {"finetune", "status", "jobs", "cancel", "chat"}
    options = {o["name"]: o for o in payload["finetune"]["options"]}
    assert options["request"]["type"] == discord.AppCommandOptionType.attachment.value
    assert [c["value"] for c in options["format"]["choices"]] == ["alpaca", "sharegpt", "messages", "completion",
                                                                  "preference", "kto"]
    assert options["base_model"].get("autocomplete") is True


def test_the_token_is_checked_and_never_shown(home, monkeypatch, capsys):
    from factory.cli.main import main

    monkeypatch.delenv("DISCORD_TOKEN", raising=False)
    assert main(["bot"]) == 2
    assert "no Discord bot token" in capsys.readouterr().err
    bad = "not-a-token-at-all-but-secret-42"
    monkeypatch.setenv("DISCORD_TOKEN", bad)
    assert main(["bot"]) == 2
    err = capsys.readouterr().err
    assert "does not look like a bot token" in err and bad not in err
    good = "M" + "a" * 25 + "." + "b" * 6 + "." + "c" * 30
    monkeypatch.setenv("DISCORD_TOKEN", good)
    assert discord_token() == good
    from factory.base.redact import redact

    assert redact(f"oops {good}") == "oops ***"


def test_the_longest_outputs_fit_discords_limits():
    findings = "invalid request:\n" + "\n".join(f"  request.yaml:{i}: `key_{i}`: " + "x" * 120 for i in range(40))
    for part in render.refusal(findings):
        assert len(part) <= render.MESSAGE
    scores = {f"task_{i:02d}_with_a_rather_long_name": {"base": {"metric": "acc", "value": 0.1, "stderr": 0.01, "n": 200},
                                                       "finetuned": {"metric": "acc", "value": 0.2, "stderr": 0.01, "n": 200}}
              for i in range(20)}
    job = Job(1, "", "org/x", "discord:1", "discord", "succeeded", "publish", 1.0, 1, None, None, False, None,
              None, None, None, {"scores": scores, "published": {"url": "https://huggingface.co/org/x"},
                                 "contamination": {"policy": "warn", "rows_flagged": 3,
                                                   "benchmarks": {"gsm8k": {"items": 1, "contaminated": 0, "rate": 0}}}},
              None)
    embed = render.result_embed(job)
    assert len(embed.fields) <= render.FIELDS and render.embed_total(embed) <= render.EMBED_TOTAL
    assert all(len(f.name) <= render.FIELD_NAME and len(f.value) <= render.FIELD_VALUE for f in embed.fields)
    failed = Job(2, "", "org/x", "discord:1", "discord", "failed", "train", 0.3, 1, None, None, False, None,
                 None, None, None, None, "internal error: RuntimeError: CUDA out of memory\n" + "trace line\n" * 500)
    embed = render.result_embed(failed)
    assert render.embed_total(embed) <= render.EMBED_TOTAL and "ran out of memory" in embed.description
    reply = " ".join(f"token{i}" for i in range(5000))  # a 5,000-token chat reply
    parts = render.split("**finetuned** (`org/x`):\n" + reply)
    assert all(len(p) <= render.MESSAGE for p in parts) and "".join(parts).endswith("token4999")


def test_the_result_embed_lists_the_gguf_files_with_the_ollama_command():
    gguf = {"repo_id": "org/x-GGUF", "url": "https://huggingface.co/org/x-GGUF", "revision": "abc",
            "files": [{"file": "x-Q8_0.gguf", "type": "q8_0", "bytes": 145_000_000, "perplexity": 7.1234},
                      {"file": "x-Q4_K_M.gguf", "type": "q4_k_m", "bytes": 105_000_000, "perplexity": 7.5}]}
    job = Job(1, "", "org/x", "discord:1", "discord", "succeeded", "publish", 1.0, 1, None, None, False, None,
              None, None, None, {"scores": {}, "published": {"url": "https://huggingface.co/org/x", "gguf": gguf}}, None)
    embed = render.result_embed(job)
    field = next(f for f in embed.fields if f.name.startswith("GGUF"))
    assert "org/x-GGUF" in field.name
    assert "Q8_0: x-Q8_0.gguf (145.0 MB, perplexity 7.123, `ollama run hf.co/org/x-GGUF:Q8_0`)" in field.value
    assert "`ollama run hf.co/org/x-GGUF:Q4_K_M`" in field.value


def test_chat_streams_by_edits_and_splits_long_replies(discord_env, tiny_base, db_url, monkeypatch):
    from factory.frontdoor.chat_engine import ChatEngine

    monkeypatch.setattr("bot.discord_bot.EDIT_EVERY_S", 0.0)
    store = Store(db_url, Limits(0, 0))
    bot = FactoryBot(store, engine=ChatEngine(device="cpu", paths=False))
    inter = interaction()
    run(bot.chat(inter, "factory/tiny-llama", "What is this text about? guitar", False))
    sent = [c for c in inter.calls if c[0] == "followup"]
    assert sent[0][2].get("wait") is True and sent[0][1].endswith("…")  # a placeholder, then edits
    edits = inter.sent.edits
    assert len(edits) >= 2 and all(len(e) <= render.MESSAGE for e in edits)
    assert edits[-1].startswith("**finetuned** (`factory/tiny-llama`):") and len(edits[-1]) > len(edits[0]) - 1
    # a folder on the bot's machine is never a chat model, however it is spelled
    for ref in (str(tiny_base), str(discord_env / "runs"), "../runs/job-1"):
        refused = interaction()
        run(bot.chat(refused, ref, "hello", False))
        assert "Hub repo id" in "\n".join(private_replies(refused)), refused.calls


def test_with_the_jobs_backend_the_queued_message_says_the_cost(discord_env, db_url, monkeypatch, tmp_path):
    from hub_server import HARDWARE

    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(HARDWARE))
    monkeypatch.setenv("FACTORY_BACKEND", "hf-jobs")
    monkeypatch.setenv("FACTORY_JOBS_PRICES", str(prices))
    monkeypatch.setenv("FACTORY_JOBS_FLAVOR", "t4-small")
    store = Store(db_url, Limits(0, 0))
    inter = interaction()
    job = run(FactoryBot(store).finetune(inter, Attachment(demo_request()), None, None, "alpaca", "lora", 1.0, 2e-4,
                                         None))
    assert job is not None, private_replies(inter)
    public = inter.channel.messages[0].content
    assert "\nEstimated cost on Hugging Face Jobs: about " in public and "min on t4-small (1x T4, $0.40/h): about $" in public

    before = interaction()  # estimate_only: the door's checks and the cost, before anything is queued
    assert run(FactoryBot(store).finetune(before, Attachment(demo_request()), None, None, "alpaca", "lora", 1.0, 2e-4,
                                          None, estimate_only=True)) is None
    reply = private_replies(before)[0]
    assert reply.startswith("The request is valid. Estimated cost on Hugging Face Jobs: about ")
    assert len(store.list()) == 1 and not before.channel.messages
    bad = interaction()
    run(FactoryBot(store).finetune(bad, Attachment(demo_request(hub_model_id="someone/else")), None, None, "alpaca",
                                   "lora", 1.0, 2e-4, None, estimate_only=True))
    assert "own-namespace" in "".join(private_replies(bad)) and len(store.list()) == 1


def test_finetune_offers_the_preference_methods(discord_env, db_url, tmp_path):
    """/finetune's method option: the dataset is read as pairs and the request trains with that method; a method
    that is not offered is refused in words; the sync payload lists the choices."""
    import json

    import yaml

    from bot.discord_bot import METHODS
    from factory.hub.local import LocalHub

    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "train.jsonl").write_text("".join(json.dumps(
        {"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(20)))
    LocalHub(discord_env / "hub").publish("org/pairs", tmp_path / "pairs", "pairs", "dataset")

    store = Store(db_url, Limits(0, 0))
    bot = FactoryBot(store)
    command = bot.tree.get_command("finetune").to_dict(bot.tree)
    method = next(o for o in command["options"] if o["name"] == "method")
    assert [c["value"] for c in method["choices"]] == METHODS and "pairs" in method["description"]
    estimate = interaction()
    assert run(bot.finetune(estimate, None, "factory/tiny-llama", "org/pairs", "alpaca", "lora", 1.0, 2e-4, "dpo-try",
                            512, True, "dpo")) is None
    assert private_replies(estimate)[0].startswith("The request is valid."), private_replies(estimate)
    queued = run(bot.finetune(interaction(), None, "factory/tiny-llama", "org/pairs", "alpaca", "lora", 1.0, 2e-4,
                              "dpo-try", 512, False, "dpo"))
    request = yaml.safe_load(store.get(queued).request)
    assert request["rl"] == "dpo" and request["datasets"][0]["type"] == "preference"
    wrong = interaction()
    assert run(bot.finetune(wrong, None, "factory/tiny-llama", "org/pairs", "alpaca", "lora", 1.0, 2e-4, None, 512,
                            False, "grpo")) is None
    assert "method one of sft, dpo, ipo, orpo, simpo, kto" in private_replies(wrong)[0]
