"""The chat engine behind `factory chat`, the Space's chat tab and the bot's /chat: the vibe check.

Models are loaded once and kept (at most FACTORY_CHAT_MAX_MODELS, least recently used evicted); one
generation runs at a time per engine (the seed is global torch state, and a CPU has nothing to spare),
each with a time and token limit; a generation streams text as it is produced and can be cancelled
between two tokens. Replies go through the model's own chat template (the one it was trained with).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from factory.base.errors import UserError


@dataclass(frozen=True)
class Settings:
    temperature: float = 0.7   # 0: greedy
    top_p: float = 0.9
    max_new_tokens: int = 256
    seed: int | None = None

    def checked(self, token_limit: int) -> "Settings":
        if not 0 <= self.temperature <= 5:
            raise UserError(f"temperature must be between 0 and 5, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise UserError(f"top_p must be in (0, 1], not {self.top_p}")
        if not 1 <= self.max_new_tokens <= token_limit:
            raise UserError(f"max_new_tokens must be between 1 and {token_limit}, not {self.max_new_tokens}")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be a whole number from 0 to {2**32 - 1}, not {self.seed}")
        return self


@dataclass
class Loaded:
    ref: str
    path: Path
    model: object
    tokenizer: object
    template: str
    render: object = None  # a render_bounds.BoundedRenderer for front doors (the model's template is a stranger's)


@dataclass
class Generation:
    """One streamed reply: iterate it for text chunks; cancel() stops it at the next token."""
    chunks: Iterator[str]
    _cancel: threading.Event
    _counter: dict = field(default_factory=dict)
    tokens_at_cancel: int | None = None

    def __iter__(self) -> Iterator[str]:
        return self.chunks

    def cancel(self) -> None:
        self.tokens_at_cancel = self.tokens
        self._cancel.set()

    @property
    def tokens(self) -> int:
        return self._counter.get("generated", 0)

    @property
    def stopped(self) -> str | None:
        return self._counter.get("stopped")


def model_path(ref: str, hub=None) -> Path:
    """A model folder for ref: a run folder (its merged/ or adapter's merge), a model folder, or a hub id."""
    p = Path(ref).expanduser()
    for candidate in (p / "merged", p):
        if (candidate / "config.json").is_file():
            return candidate
    from factory.hub.choose import default_hub, model_folder

    return model_folder(ref, hub or default_hub())[0]


def default_models(hub=None) -> list[str]:
    """The models the front doors and `factory chat` offer first: the real-model demo's finetune (compared
    with SmolLM2-135M-Instruct, its base) when `make demo-real` has made it, then the tiny demo's."""
    from factory.hub.choose import default_hub
    from factory.demo.real_model import FINETUNED_ID

    hub = hub or default_hub()
    return [m for m in (FINETUNED_ID,) if hub.exists(m)] + ["factory/tiny-llama-demo-instruct"]


def chat_hub(store, user: str, ref: str, hub_token: str | None = None):
    """The hub a front door reads a chat model through, for `user`: the operator's when ref is a model one of
    the user's own jobs published (it went where the operator publishes their models), else the user's own
    identity (their sign-in token, or public repos only)."""
    from factory.admission.admission import reader_hub

    if ref in {j.hub_model_id for j in store.list(status="succeeded", submitter=user, limit=500)}:
        from factory.hub.choose import default_hub

        return default_hub()
    return reader_hub(user, hub_token)


def base_of(path: Path) -> str | None:
    """The base model a factory-made model was trained from (its factory_request.yaml), if known."""
    import yaml

    req = path / "factory_request.yaml"
    if not req.is_file():
        return None
    try:
        return (yaml.safe_load(req.read_text()) or {}).get("base_model")
    except yaml.YAMLError:
        return None


class ChatEngine:
    """paths=False (the Space, the bot, the API): a model is a Hub repo id, read through the hub each call
    passes (the user's own identity), never a folder on the server; `factory chat` may name folders."""

    def __init__(self, hub=None, max_models: int | None = None, time_limit_s: float = 120.0, token_limit: int = 1024,
                 device: str | None = None, paths: bool = True):
        self.hub = hub
        self.paths = paths
        self.max_models = max_models or int(os.environ.get("FACTORY_CHAT_MAX_MODELS", "2"))
        self.time_limit_s, self.token_limit = time_limit_s, token_limit
        self.device = device or _default_device()
        self._models: OrderedDict[str, Loaded] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    # ---- models --------------------------------------------------------------------------------

    def loaded(self) -> list[str]:
        with self._cache_lock:
            return [m.ref for m in self._models.values()]

    def locate(self, ref: str, hub=None) -> Path:
        """The model's folder, read through hub (default: the engine's): every call checks access again, so
        a model one user may read is never handed to another from the cache."""
        if self.paths:
            return model_path(ref, hub or self.hub)
        from factory.hub.choose import default_hub
        from factory.base.ids import repo_id_problem

        if problem := repo_id_problem(ref):
            raise UserError(f"a chat model is a Hub repo id (org/name): {problem}")
        hub = hub or self.hub or default_hub()
        if not hub.exists(ref):
            raise UserError(f"model '{ref}' was not found, or you may not read it")
        return hub.snapshot(ref, "model")[0]

    def load(self, ref: str, hub=None) -> Loaded:
        path = self.locate(ref, hub)
        key = str(path)
        with self._cache_lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            loaded = self._load(ref, path)
            self._models[key] = loaded
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)  # the least recently used
            return loaded

    def _load(self, ref: str, path: Path) -> Loaded:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from factory.data.chat import BUILTIN_TEMPLATES

        tokenizer = AutoTokenizer.from_pretrained(path)
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        template = tokenizer.chat_template or BUILTIN_TEMPLATES["chatml"]
        render = None
        if not self.paths:  # a front door's model: its template is a stranger's code, rendered within bounds
            from factory.data.render_bounds import BoundedRenderer

            render = BoundedRenderer(tokenizer, template)
        return Loaded(ref, path, model, tokenizer, template, render)

    # ---- generation ------------------------------------------------------------------------------

    def _prompt(self, loaded: Loaded, messages: list[dict], tools: list[dict] | None = None):
        text = self._prompt_text(loaded, messages, tools)
        return loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False).to(self.device)

    def _prompt_text(self, loaded: Loaded, messages: list[dict], tools: list[dict] | None = None) -> str:
        from factory.frontdoor.tool_schemas import placed

        if not messages or messages[-1].get("role") != "user":
            raise UserError("a chat turn ends with the user's message")
        messages, extra = placed(loaded.template, messages, tools)
        if loaded.render is not None:
            from factory.data.render_bounds import RenderError

            try:
                text = loaded.render(messages, add_generation_prompt=True, **extra)
            except RenderError as exc:
                raise UserError(f"the model's chat template refused this conversation ({exc})") from None
        else:
            text = loaded.tokenizer.apply_chat_template(messages, chat_template=loaded.template, tokenize=False,
                                                        add_generation_prompt=True, **extra)
        return text

    def _kwargs(self, loaded: Loaded, settings: Settings) -> dict:
        tok = loaded.tokenizer
        kw = {"max_new_tokens": settings.max_new_tokens, "pad_token_id": tok.pad_token_id or tok.eos_token_id}
        if settings.temperature > 0:
            kw.update(do_sample=True, temperature=settings.temperature, top_p=settings.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None)
        return kw

    def generate(self, ref: str, messages: list[dict], settings: Settings = Settings(), hub=None,
                 tools: list[dict] | None = None) -> str:
        """The whole reply at once (no streamer); the same text that stream() yields for the same seed."""
        import torch

        settings = settings.checked(self.token_limit)
        loaded = self.load(ref, hub)
        inputs = self._prompt(loaded, messages, tools)
        with self._generate_lock, torch.no_grad():
            if settings.seed is not None:
                torch.manual_seed(settings.seed)
            out = loaded.model.generate(**inputs, **self._kwargs(loaded, settings))
        return loaded.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    def stream(self, ref: str, messages: list[dict], settings: Settings = Settings(), hub=None,
               tools: list[dict] | None = None) -> Generation:
        """A reply streamed as text chunks, stopped by cancel(), the time limit or the token limit; `tools`
        (tool_schemas.parse) go where the model's template reads them."""
        settings = settings.checked(self.token_limit)
        loaded = self.load(ref, hub)
        inputs = self._prompt(loaded, messages, tools)
        cancel, counter = threading.Event(), {}
        return Generation(self._chunks(loaded, inputs, settings, cancel, counter), cancel, counter)

    def _chunks(self, loaded: Loaded, inputs, settings: Settings, cancel: threading.Event, counter: dict):
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        prompt_len = inputs["input_ids"].shape[1]
        deadline = time.monotonic() + self.time_limit_s

        class Stop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw):
                counter["generated"] = input_ids.shape[1] - prompt_len
                reason = "cancelled" if cancel.is_set() else "time limit" if time.monotonic() > deadline else None
                if reason:
                    counter["stopped"] = reason
                return torch.full((input_ids.shape[0],), reason is not None, dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self.time_limit_s + 30)
        errors: list[BaseException] = []

        def run():
            try:
                with self._generate_lock, torch.no_grad():
                    if settings.seed is not None:
                        torch.manual_seed(settings.seed)
                    loaded.model.generate(**inputs, **self._kwargs(loaded, settings), streamer=streamer,
                                          stopping_criteria=StoppingCriteriaList([Stop()]))
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                errors.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        try:
            for chunk in streamer:
                if chunk:
                    yield chunk
        finally:
            cancel.set()  # a consumer that stops reading stops the generation too
            thread.join()
            counter.setdefault("stopped", "done")
        if errors:
            raise errors[0]


def _default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"
