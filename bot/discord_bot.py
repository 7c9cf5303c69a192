"""The Discord front door: /finetune, /status, /jobs, /cancel (and a Cancel button), /chat; progress in a thread.

Everything it knows lives in the job store: jobs, their events, and a delivery cursor per thread, so a
restarted bot posts exactly what it had not posted yet. Who may do what is checked here, not only by
Discord's own command permissions (server admins can change those):
  FACTORY_DISCORD_GUILDS          servers (ids) where the bot answers at all
  FACTORY_DISCORD_ROLES           role ids allowed to /finetune (empty: everyone in those servers)
  FACTORY_DISCORD_OPERATOR_ROLES  role ids that may cancel anyone's job and list all jobs (ids, never names:
                                  a member who may create roles could name one like an operator role)
  FACTORY_DISCORD_NAMESPACE       the Hub namespace Discord users' models are published into
The token comes from DISCORD_TOKEN or the secrets file (mode 600) and is never printed.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time

import discord
import yaml
from discord import app_commands

from bot import render
from factory.admission.admission import reader_hub
from factory.frontdoor.costs import cost_note
from factory.request.config import loads_request
from factory.base.errors import UserError
from factory.queue.jobs import Store

FRONT_DOOR = "discord"
MAX_ATTACHMENT = 64 * 1024
FORMATS = ["alpaca", "sharegpt", "messages", "completion", "preference", "kto"]
METHODS = ["sft", "dpo", "ipo", "orpo", "simpo", "kto"]  # sft: imitate; the others train on preference pairs
ADAPTERS = ["lora", "qlora"]
EDIT_EVERY_S = 1.5  # a streamed /chat reply is edited in at most this often (Discord's rate limits)
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{20,}$")


# ---- configuration and checks ------------------------------------------------------------------

def _ids(name: str) -> set[str]:
    return {x.strip() for x in os.environ.get(name, "").split(",") if x.strip()}


def discord_token() -> str:
    """DISCORD_TOKEN or the secrets file's; a missing or malformed one is a UserError (exit 2)."""
    from factory.base.secrets_file import read_secrets, secrets_file
    from factory.base.redact import register

    value = os.environ.get("DISCORD_TOKEN") or read_secrets().get("DISCORD_TOKEN")
    if not value:
        raise UserError(f"no Discord bot token: set DISCORD_TOKEN, or put DISCORD_TOKEN=... in {secrets_file()} (chmod 600)")
    register(value)
    if not TOKEN_SHAPE.match(value.strip()):
        raise UserError("DISCORD_TOKEN does not look like a bot token (three dot-separated parts); copy it again from "
                        "the Discord developer portal, Bot tab")
    return value.strip()


def guild_allowed(guild_id: int | None) -> bool:
    allowed = _ids("FACTORY_DISCORD_GUILDS")
    return guild_id is not None and (not allowed or str(guild_id) in allowed)


def _has_role(member, wanted: set[str]) -> bool:
    """By role id only: any member who may create roles can name one like an operator role."""
    roles = getattr(member, "roles", None) or []
    return any(str(r.id) in wanted for r in roles)


def may_finetune(member) -> bool:
    wanted = _ids("FACTORY_DISCORD_ROLES")
    return not wanted or _has_role(member, wanted) or is_operator(member)


def is_operator(member) -> bool:
    wanted = _ids("FACTORY_DISCORD_OPERATOR_ROLES")
    return bool(wanted) and _has_role(member, wanted)


def submitter(user) -> str:
    return f"discord:{user.id}"


def denial(interaction: discord.Interaction, need_finetune: bool = False) -> str | None:
    """Why this person may not use this command here, or None."""
    if not guild_allowed(getattr(interaction, "guild_id", None)):
        return "The model factory is not enabled in this server (FACTORY_DISCORD_GUILDS)."
    if need_finetune and not may_finetune(interaction.user):
        return "You need one of the roles allowed to finetune here (FACTORY_DISCORD_ROLES)."
    return None


def options_request(base_model: str, dataset: str, fmt: str, adapter: str, epochs: float, learning_rate: float,
                    repo_name: str | None, sequence_len: int = 1024, method: str = "sft") -> str:
    """The common case as a request (validated like any other afterwards: autocomplete is only a suggestion). A
    preference method reads the dataset as pairs (type preference) unless it is KTO's labelled completions."""
    if method != "sft" and fmt not in ("preference", "kto"):
        fmt = "preference"
    req = {"base_model": base_model, "datasets": [{"path": dataset, "type": fmt}], "adapter": adapter,
           "lora_target_linear": True, "num_epochs": epochs, "learning_rate": learning_rate,
           "sequence_len": sequence_len}
    if method != "sft":
        req["rl"] = method
    if adapter == "qlora":
        req["load_in_4bit"] = True
    ns = os.environ.get("FACTORY_DISCORD_NAMESPACE")
    if repo_name and ns:
        req["hub_model_id"] = f"{ns}/{repo_name}"
    return yaml.safe_dump(req, sort_keys=False)


# ---- the bot -----------------------------------------------------------------------------------

class FactoryBot:
    def __init__(self, store: Store | None = None, engine=None, client: discord.Client | None = None):
        self.store = store or Store()
        self.engine = engine
        self.client = client or discord.Client(intents=discord.Intents.default())
        self.tree = app_commands.CommandTree(self.client)
        self.owner = f"bot:{os.getpid()}:{id(self)}"
        self.threads: dict = {}  # thread id -> channel object, filled as threads are made or fetched
        self._register()
        bot = self

        class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"factory:cancel:(?P<job>[0-9]+)"):
            """Survives restarts: the job id is in the custom_id, and the handler reads the store."""

            def __init__(self, job_id: int):
                super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                                   custom_id=f"factory:cancel:{job_id}"))
                self.job_id = job_id

            @classmethod
            async def from_custom_id(cls, interaction, item, match):
                return cls(int(match["job"]))

            async def callback(self, interaction: discord.Interaction):
                await bot.cancel_job(interaction, self.job_id)

        self.CancelButton = CancelButton
        self.client.add_dynamic_items(CancelButton)

    def cancel_view(self, job_id: int) -> discord.ui.View:
        view = discord.ui.View(timeout=None)
        view.add_item(self.CancelButton(job_id))
        return view

    # ---- commands ----------------------------------------------------------------------------

    def _register(self) -> None:
        tree, bot = self.tree, self

        @tree.command(name="finetune", description="Finetune a model: attach a request YAML, or fill the options")
        @app_commands.describe(request="a request .yaml (at most 64 KiB)", base_model="Hub id of the base model",
                               dataset="Hub id of the dataset", format="the dataset's prompt format",
                               adapter="lora or qlora", epochs="passes over the data", learning_rate="e.g. 0.0002",
                               repo_name="name of the model repo to publish",
                               sequence_len="tokens per packed row (default 1024)",
                               method="sft imitates the answers; dpo, ipo, orpo, simpo, kto train on "
                                      "chosen/rejected pairs (the dataset read as pairs)",
                               estimate_only="check the request and show its estimated cost, without queueing it")
        @app_commands.choices(format=[app_commands.Choice(name=f, value=f) for f in FORMATS],
                              adapter=[app_commands.Choice(name=a, value=a) for a in ADAPTERS],
                              method=[app_commands.Choice(name=m, value=m) for m in METHODS])
        async def finetune(interaction: discord.Interaction, request: discord.Attachment | None = None,
                           base_model: str | None = None, dataset: str | None = None, format: str = "alpaca",
                           adapter: str = "lora", epochs: float = 1.0, learning_rate: float = 2e-4,
                           repo_name: str | None = None, sequence_len: int = 1024, estimate_only: bool = False,
                           method: str = "sft"):
            await bot.finetune(interaction, request, base_model, dataset, format, adapter, epochs, learning_rate,
                               repo_name, sequence_len, estimate_only, method)

        @finetune.autocomplete("base_model")
        async def _bases(interaction: discord.Interaction, current: str):
            return [app_commands.Choice(name=b, value=b) for b in bot.recent_bases() if current.lower() in b.lower()][:25]

        @tree.command(name="status", description="A job's stage, progress and last events")
        async def status(interaction: discord.Interaction, job: int):
            await bot.status(interaction, job)

        @tree.command(name="jobs", description="Your jobs (operators: everyone's)")
        @app_commands.choices(which=[app_commands.Choice(name="mine", value="mine"),
                                     app_commands.Choice(name="all", value="all")])
        async def jobs(interaction: discord.Interaction, which: str = "mine"):
            await bot.jobs(interaction, which)

        @tree.command(name="cancel", description="Cancel one of your jobs (operators: any job)")
        async def cancel(interaction: discord.Interaction, job: int):
            await interaction.response.defer(ephemeral=True, thinking=True)
            await bot.cancel_job(interaction, job, deferred=True)

        @tree.command(name="chat", description="Ask a finetuned model (and its base) something")
        async def chat(interaction: discord.Interaction, prompt: str, model: str | None = None,
                       compare_with_base: bool = False):
            await bot.chat(interaction, model, prompt, compare_with_base)

    def recent_bases(self) -> list[str]:
        seen = []
        for job in self.store.list(limit=100):
            try:
                base = (yaml.safe_load(job.request) or {}).get("base_model")
            except yaml.YAMLError:
                continue
            if isinstance(base, str) and base not in seen:
                seen.append(base)
        return seen

    async def _private(self, interaction: discord.Interaction, text: str) -> None:
        for part in render.split(text):
            await interaction.followup.send(part, ephemeral=True)

    async def finetune(self, interaction, attachment, base_model, dataset, fmt, adapter, epochs, learning_rate,
                       repo_name, sequence_len: int = 1024, estimate_only: bool = False,
                       method: str = "sft") -> int | None:
        await interaction.response.defer(ephemeral=True, thinking=True)  # Discord wants an answer within 3 s
        if why := denial(interaction, need_finetune=True):
            await self._private(interaction, why)
            return None
        if attachment is not None:
            if not attachment.filename.lower().endswith((".yaml", ".yml")):
                await self._private(interaction, "Attach the request as a .yaml or .yml file.")
                return None
            if attachment.size > MAX_ATTACHMENT:  # checked before a byte is read
                await self._private(interaction, f"The request file is {attachment.size:,} bytes; at most "
                                                 f"{MAX_ATTACHMENT:,} are accepted.")
                return None
            text = (await attachment.read()).decode("utf-8", errors="replace")
        elif base_model and dataset:
            if (fmt not in FORMATS or adapter not in ADAPTERS or method not in METHODS or not 0 < epochs <= 100
                    or not 0 < learning_rate < 1 or not 16 <= sequence_len <= 131072):
                await self._private(interaction, f"format must be one of {', '.join(FORMATS)}, adapter one of "
                                                 f"{', '.join(ADAPTERS)}, method one of {', '.join(METHODS)}, epochs in "
                                                 "(0, 100], learning_rate in (0, 1), sequence_len from 16 to 131072.")
                return None
            text = options_request(base_model, dataset, fmt, adapter, epochs, learning_rate, repo_name, sequence_len,
                                   method)
        else:
            await self._private(interaction, "Attach a request .yaml, or give at least base_model and dataset.")
            return None
        if estimate_only:  # before submitting: the door's checks and the cost, nothing queued
            from factory.admission.admission import admit

            try:
                request = await asyncio.to_thread(admit, text, submitter(interaction.user), FRONT_DOOR)
            except UserError as exc:
                for part in render.refusal(str(exc)):
                    await interaction.followup.send(part, ephemeral=True)
                return None
            cost = await asyncio.to_thread(cost_note, request, reader_hub(submitter(interaction.user)))
            await self._private(interaction, "The request is valid. " + (cost or "This factory runs jobs on its own "
                                "machines: there is no Hugging Face Jobs cost to estimate.") + " Run the command again "
                                "without estimate_only to queue it.")
            return None
        try:
            job_id = await asyncio.to_thread(self.store.submit, text, submitter(interaction.user), FRONT_DOOR)
        except UserError as exc:
            for part in render.refusal(str(exc)):
                await interaction.followup.send(part, ephemeral=True)
            return None
        job = self.store.get(job_id)
        cost = await asyncio.to_thread(cost_note, loads_request(job.request), reader_hub(job.submitter))
        message = await interaction.channel.send(
            f"{interaction.user.mention} queued **job {job_id}**: `{job.hub_model_id}`. Progress in the thread."
            + (f"\n{cost}" if cost else ""), view=self.cancel_view(job_id))
        thread = await message.create_thread(name=f"job {job_id}: {job.hub_model_id}"[:100])
        self.store.add_target(FRONT_DOOR, job_id, str(thread.id))
        self.threads[str(thread.id)] = thread
        await interaction.followup.send(f"Job {job_id} accepted.", ephemeral=True)
        return job_id

    async def status(self, interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if why := denial(interaction):
            return await self._private(interaction, why)
        try:
            job = self.store.get(job_id)
        except UserError as exc:
            return await self._private(interaction, str(exc))
        if job.submitter != submitter(interaction.user) and not is_operator(interaction.user):
            return await self._private(interaction, f"Job {job_id} is not yours.")
        await self._private(interaction, render.status_text(job, self.store.events(job_id)))

    async def jobs(self, interaction, which: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if why := denial(interaction):
            return await self._private(interaction, why)
        everyone = which == "all" and is_operator(interaction.user)
        found = self.store.list(submitter=None if everyone else submitter(interaction.user), limit=20)
        lines = [f"job {j.id}: {j.status}{' / ' + j.stage if j.stage and j.status == 'running' else ''} -> "
                 f"{j.hub_model_id or '-'}" for j in found] or ["No jobs."]
        if which == "all" and not everyone:
            lines.insert(0, "(only operators see everyone's jobs; these are yours)")
        await self._private(interaction, "\n".join(lines))

    async def cancel_job(self, interaction, job_id: int, deferred: bool = False) -> None:
        if not deferred:
            await interaction.response.defer(ephemeral=True, thinking=True)
        if why := denial(interaction):
            return await self._private(interaction, why)
        try:
            job = self.store.cancel(job_id, submitter(interaction.user), operator=is_operator(interaction.user))
        except UserError as exc:
            return await self._private(interaction, str(exc))
        await self._private(interaction, f"Job {job_id}: " + ("cancelled." if job.status == "cancelled"
                                                               else "stopping at its next step; nothing will be published."))

    async def chat(self, interaction, model: str | None, prompt: str, compare: bool) -> None:
        """No model: the default pair (the real-model demo's finetune, or the tiny demo's) against its base."""
        from factory.frontdoor.chat_engine import ChatEngine, Settings, base_of, chat_hub, default_models

        await interaction.response.defer(thinking=True)
        if why := denial(interaction):
            return await self._private(interaction, why)
        self.engine = self.engine or ChatEngine(paths=False)  # a Hub repo id, read as the user, never a folder
        who = submitter(interaction.user)
        if model is None:
            model, compare = default_models(self.engine.hub)[0], True
        pairs = [("finetuned", model)]
        try:
            if compare:
                base = base_of(self.engine.locate(model, chat_hub(self.store, who, model)))
                if base:
                    pairs.append(("base", base))
            for label, ref in pairs:
                await self._stream_reply(interaction, label, ref, prompt, Settings(temperature=0.7, max_new_tokens=512),
                                         chat_hub(self.store, who, ref))
        except UserError as exc:
            await self._private(interaction, str(exc))

    async def _stream_reply(self, interaction, label: str, ref: str, prompt: str, settings, hub=None) -> str:
        """Edit the reply in as it streams (at most every EDIT_EVERY_S), then split it when it is long."""
        head = f"**{label}** (`{ref}`):\n"
        gen = self.engine.stream(ref, [{"role": "user", "content": prompt}], settings, hub)
        queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def pump():
            try:
                for chunk in gen:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        worker = asyncio.create_task(asyncio.to_thread(pump))
        message = await interaction.followup.send(head + "…", wait=True)
        text, last_edit = "", 0.0
        while (chunk := await queue.get()) is not None:
            text += chunk
            if time.monotonic() - last_edit >= EDIT_EVERY_S and len(head) + len(text) <= render.MESSAGE:
                await message.edit(content=head + text)
                last_edit = time.monotonic()
        await worker
        parts = render.split(head + (text or "(an empty reply)"))
        await message.edit(content=parts[0])
        for part in parts[1:]:
            await interaction.followup.send(part)
        return text

    # ---- progress in threads -----------------------------------------------------------------

    async def channel_for(self, target: str):
        if target in self.threads:
            return self.threads[target]
        channel = self.client.get_channel(int(target)) or await self.client.fetch_channel(int(target))
        self.threads[target] = channel
        return channel

    async def deliver_once(self) -> int:
        """Post every undelivered milestone of every job with a thread; returns how many events were handled."""
        from factory.frontdoor.delivery import Deliverer

        loop = asyncio.get_running_loop()
        handled = 0
        for job_id, target in await asyncio.to_thread(self.store.delivery_targets, FRONT_DOOR):
            channel = await self.channel_for(target)

            def send(event, job_id=job_id, channel=channel):
                post = self._post_for(job_id, event)
                if post is not None:
                    asyncio.run_coroutine_threadsafe(channel.send(**post), loop).result(timeout=60)

            handled += await asyncio.to_thread(Deliverer(self.store, FRONT_DOOR, target, send, owner=self.owner).pump,
                                               job_id)
        return handled

    def _post_for(self, job_id: int, event) -> dict | None:
        if event.kind == "status" and event.payload.get("status") in ("succeeded", "failed", "cancelled"):
            return {"embed": render.result_embed(self.store.get(job_id))}
        previous = None
        if event.kind == "progress":
            earlier = [e for e in self.store.events(job_id) if e.id < event.id and e.kind == "progress"
                       and e.payload.get("stage") == event.payload.get("stage")]
            previous = earlier[-1] if earlier else None
        line = render.milestone(event, previous)
        return {"content": render.split(line)[0]} if line else None

    async def delivery_loop(self, every_s: float = 5.0) -> None:
        while True:
            try:
                await self.deliver_once()
            except Exception as exc:  # noqa: BLE001 - the loop outlives a failed post; the cursor keeps its place
                from factory.base.redact import redact

                print(redact(f"delivery: {type(exc).__name__}: {exc}"), file=sys.stderr)
            await asyncio.sleep(every_s)

    # ---- running ---------------------------------------------------------------------------------

    def run(self, token: str) -> None:
        bot = self

        @self.client.event
        async def on_ready():
            for gid in _ids("FACTORY_DISCORD_GUILDS"):
                guild = discord.Object(id=int(gid))
                bot.tree.copy_global_to(guild=guild)
                await bot.tree.sync(guild=guild)
            print(f"factory bot ready as {bot.client.user}; commands registered in "
                  f"{len(_ids('FACTORY_DISCORD_GUILDS')) or 'no'} allowed guilds", file=sys.stderr)
            bot.client.loop.create_task(bot.delivery_loop())

        self.client.run(token, log_handler=None)


def check_settings() -> None:
    """Servers and roles are named by id: a name is refused at start, not silently never matched."""
    for name in ("FACTORY_DISCORD_GUILDS", "FACTORY_DISCORD_ROLES", "FACTORY_DISCORD_OPERATOR_ROLES"):
        names = sorted(x for x in _ids(name) if not x.isdigit())
        if names:
            raise UserError(f"{name}: {', '.join(names)} is not an id; give ids (Discord: Developer Mode, then right-click "
                            "the server or role, Copy ID): names can be copied by anyone who may create roles")


def main() -> int:
    token = discord_token()  # before anything else: a missing token is one clear line
    check_settings()
    if not _ids("FACTORY_DISCORD_GUILDS"):
        print("warning: FACTORY_DISCORD_GUILDS is empty: the bot answers in every server it is in", file=sys.stderr)
    FactoryBot().run(token)
    return 0


