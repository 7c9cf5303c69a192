"""The model factory as a Gradio app: submit a finetune, watch it train, read its results, chat with it.

Runs as a Hugging Face Space (users sign in with their Hub account; `hf_oauth: true` in README.md) or
on a laptop with `factory space [--worker]` (no Hub login: the user is FACTORY_SPACE_USER or the login
name). Everything it shows comes from the job store, so a reload, a closed tab or a restarted Space
loses nothing; every request goes through Store.submit(..., front_door="space").
"""

from __future__ import annotations

import getpass
import html
import os
import threading
from pathlib import Path

import gradio as gr
import pandas as pd
import yaml

from factory.frontdoor import job_views
from factory.frontdoor.chat_engine import ChatEngine, Settings, base_of, chat_hub, default_models
from factory.frontdoor.costs import cost_note
from factory.request.config import loads_request
from factory.base.errors import UserError
from factory.admission.admission import reader_hub
from factory.queue.jobs import Store

ON_SPACE = bool(os.environ.get("SPACE_ID"))
POLL_S = float(os.environ.get("FACTORY_SPACE_POLL_SECONDS", "2"))
CHATS_PER_USER = 1

FIELDS = [  # guided fields: (label, request key, kind)
    ("Base model", "base_model", "text"), ("Dataset (Hub id)", "datasets.0.path", "text"),
    ("Format", "datasets.0.type", ["alpaca", "sharegpt", "messages", "completion"]),
    ("Adapter", "adapter", ["lora", "qlora"]), ("Epochs", "num_epochs", "number"),
    ("Learning rate", "learning_rate", "number"), ("Sequence length", "sequence_len", "number"),
    ("Target repo", "hub_model_id", "text"),
]

# The button asks first; declining sends -1, which cancels nothing (API callers are not asked).
CONFIRM_CANCEL = ("(job) => (job && confirm(`Cancel job ${job}? It stops at its next step; nothing is published.`))"
                  " ? job : -1")

CSS = """
.mask-preview pre { white-space: pre-wrap; font-size: 13px; line-height: 1.5; margin: 4px 0 12px; }
.mask-preview .trained { background: #d9f2d9; color: #0b3d0b; border-radius: 3px; }
.mask-preview .masked { color: #8a8a8a; }
.mask-preview .row-label { font-weight: 600; font-size: 12px; color: #555; }
.bar { background: #eee; border-radius: 6px; height: 16px; overflow: hidden; }
.bar > div { background: #3b82f6; height: 100%; }
.legend span { padding: 0 6px; border-radius: 3px; margin-right: 8px; }
"""


def example_request(user: str) -> str:
    """The demo request, published into the user's own namespace."""
    from factory.demo import demo

    data = yaml.safe_load(demo.REQUEST.read_text())
    data["hub_model_id"] = f"{user.partition(':')[2] or 'me'}/tiny-llama-demo"
    return yaml.safe_dump(data, sort_keys=False)


def local_user() -> str:
    return "hf:" + (os.environ.get("FACTORY_SPACE_USER") or getpass.getuser())


def who(profile: gr.OAuthProfile | None) -> str | None:
    """hf:<username> of the signed-in user on a Space; the local user elsewhere; None when signed out."""
    if not ON_SPACE:
        return local_user()
    return f"hf:{profile.username}" if profile is not None else None


def _get(data: dict, key: str):
    for part in key.split("."):
        if isinstance(data, list):
            data = data[int(part)] if part.isdigit() and int(part) < len(data) else None
        elif isinstance(data, dict):
            data = data.get(part)
        if data is None:
            return None
    return data


def _set(data: dict, key: str, value) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = [{}] if nxt.isdigit() else {}
        node = node[part]
    last = parts[-1]
    if value in (None, ""):
        node.pop(last, None) if isinstance(node, dict) else None
    else:
        node[last] = value


def build(store: Store | None = None, engine: ChatEngine | None = None) -> gr.Blocks:
    store = store or Store()
    engine = engine or ChatEngine(paths=False)  # a chat model is a Hub repo id, read as the user, never a folder
    active_chats: dict[str, int] = {}
    chats_lock = threading.Lock()

    # ---- handlers ----------------------------------------------------------------------------

    def findings(text: str, profile: gr.OAuthProfile | None = None, token: gr.OAuthToken | None = None) -> str:
        """Validation and lint as the user types, reading as the user: each finding with its reason."""
        from factory.admission.admission import admit, reader_hub
        from factory.admission.checks import check_request

        user = who(profile)
        if user is None:
            return "Sign in with Hugging Face to validate and submit."
        secret = token.token if token is not None else None
        try:
            request = admit(text, user, "space", hub_token=secret)
            lint = check_request(request, "space request", reader_hub(user, secret))
        except UserError as exc:
            return "### Not accepted\n\n" + "\n".join(f"- {line.strip()}" for line in str(exc).splitlines() if line.strip())
        from factory.admission.lint import RULES

        reasons = {r.id: r.reason for r in RULES}
        lines = [f"- **{f.severity}** `{f.rule}`: {f.message}  \n  _why: {reasons.get(f.rule, '')}_" for f in lint]
        return "### Valid: ready to submit\n\n" + ("\n".join(lines) if lines else "No lint findings.")

    def fields_from_yaml(text: str):
        from factory.admission.yaml_guard import load_untrusted

        try:
            data = load_untrusted(text) or {}  # the editor holds a stranger's text: no bombs here either
        except UserError:
            return [gr.update() for _ in FIELDS]
        if not isinstance(data, dict):
            return [gr.update() for _ in FIELDS]
        return [gr.update(value=_get(data, key)) for _, key, _ in FIELDS]

    def yaml_from_fields(text: str, *values):
        from factory.admission.yaml_guard import load_untrusted

        try:
            data = load_untrusted(text) or {}
        except UserError:
            return gr.update()  # fix the YAML first; never overwrite what the user wrote
        if not isinstance(data, dict):
            return gr.update()
        for (_, key, kind), value in zip(FIELDS, values):
            if kind == "number" and value is not None:
                value = int(value) if float(value).is_integer() and key != "learning_rate" else float(value)
            _set(data, key, value)
        return yaml.safe_dump(data, sort_keys=False)

    def show_preview(text: str, profile: gr.OAuthProfile | None = None, token: gr.OAuthToken | None = None) -> str:
        from factory.admission.admission import admit, reader_hub
        from factory.frontdoor.mask_preview import as_html, preview

        user = who(profile)
        if user is None:
            return "Sign in first."
        secret = token.token if token is not None else None
        try:
            request = admit(text, user, "space", hub_token=secret)
            hub = reader_hub(user, secret)  # the user's rows, read as the user
            rows = preview(request, hub, rows=3, bounded=True)
        except UserError as exc:
            return f"<p>Cannot preview: {exc}</p>"
        cost = cost_note(request, hub)
        legend = ('<p class="legend"><span class="trained" style="background:#d9f2d9">trained tokens</span>'
                  '<span style="color:#8a8a8a">masked (not trained)</span></p>')
        return (f'<p class="cost">{html.escape(cost)}</p>' if cost else "") + legend + as_html(rows)

    def submit(text: str, profile: gr.OAuthProfile | None = None, token: gr.OAuthToken | None = None):
        user = who(profile)
        if user is None:
            return "Sign in with Hugging Face to submit.", gr.update()
        try:
            job = store.submit(text, user, "space", hub_token=token.token if token is not None else None)
        except UserError as exc:
            return f"### Refused\n\n```\n{exc}\n```", gr.update()
        cost = cost_note(loads_request(store.get(job).request), reader_hub(user, token.token if token else None))
        return (f"### Queued as job {job}\n\n" + (f"{cost}\n\n" if cost else "") + "Follow it in the Jobs tab.",
                gr.update(value=job))

    def jobs_table(profile: gr.OAuthProfile | None = None):
        user = who(profile)
        if user is None:
            return pd.DataFrame(columns=["job", "status", "stage", "progress", "repo", "submitted by"])
        mine = None if user in store.limits.operators else user
        rows = [[j.id, j.status, "done" if j.status == "succeeded" else (j.stage or ""),
                 f"{(1.0 if j.status == 'succeeded' else j.progress):.0%}",
                 j.hub_model_id or "", j.submitter] for j in store.list(submitter=mine, limit=50)]
        return pd.DataFrame(rows, columns=["job", "status", "stage", "progress", "repo", "submitted by"])

    def newest(profile: gr.OAuthProfile | None = None):
        user = who(profile)
        jobs = store.list(submitter=None if user in store.limits.operators else user, limit=1) if user else []
        return jobs[0].id if jobs else None

    def job_detail(job_id, profile: gr.OAuthProfile | None = None):
        empty = ("Pick a job.", "", None, "", "")
        user = who(profile)
        if not job_id or user is None:
            return empty
        try:
            job = store.get(int(job_id))
        except (UserError, ValueError):
            return ("No such job.",) + empty[1:]
        if job.submitter != user and user not in store.limits.operators:
            return ("That job is someone else's.",) + empty[1:]
        events = store.events(job.id)
        p = job_views.progress(job, events)
        bar = (f'<div class="bar" title="{p.fraction:.0%}"><div style="width:{p.fraction * 100:.1f}%"></div></div>'
               f"<p>{job_views.status_line(job, events)}</p>")
        points = job_views.loss_points(events)
        frame = pd.DataFrame(points) if points else None  # an empty frame fixes a numeric colour scale (-Infinity)
        log = "\n".join(job_views.recent(events))
        where = {"succeeded": "published", "failed": f"failed in stage {job.stage or '-'}",
                 "cancelled": f"stopped in stage {job.stage or '-'}"}.get(job.status, f"stage {job.stage or '-'}")
        return (f"**job {job.id} {job.status}** · {where} · {job.hub_model_id or ''}", bar, frame, log,
                job_views.failure(job))

    def controls(job_id, profile: gr.OAuthProfile | None = None):
        """The cancel button, shown while the picked job can still be cancelled; the cancel note cleared once
        the job has ended (the headline says how)."""
        user = who(profile)
        try:
            job = store.get(int(job_id)) if job_id and user else None
        except (UserError, ValueError):
            job = None
        live = job is not None and job.status in ("queued", "running") and (
            job.submitter == user or user in store.limits.operators)
        return gr.update(visible=live), gr.skip() if live else ""

    def cancel(job_id, profile: gr.OAuthProfile | None = None) -> str:
        if job_id == -1:  # the page's confirmation was declined
            return "Not cancelled."
        user = who(profile)
        if not job_id or user is None:
            return "Pick a job (and sign in)."
        try:
            job = store.cancel(int(job_id), user)
        except UserError as exc:
            return str(exc)
        return f"job {job.id}: {'cancelled' if job.status == 'cancelled' else 'stopping at its next step'}"

    def results(job_id, profile: gr.OAuthProfile | None = None):
        headers = ["task", "metric", "items", "base", "finetuned", "delta"]
        nothing = (pd.DataFrame(columns=headers), pd.DataFrame(columns=["benchmark", "items", "overlap", "rate"]),
                   "", "", "")
        user = who(profile)
        if not job_id or user is None:
            return nothing
        try:
            job = store.get(int(job_id))
        except (UserError, ValueError):
            return nothing
        if job.submitter != user and user not in store.limits.operators:
            return nothing
        if job.status != "succeeded":
            return nothing[:4] + (f"job {job.id} is {job.status}; results appear when it succeeds.",)
        card = Path(job.result.get("run_dir", "")) / "README.md"
        body = card.read_text().split("---", 2)[-1] if card.is_file() else "(no card)"
        body = body.replace("![Training loss](loss.svg)", "(The loss curve is in the Jobs tab.)")
        url = (job.result.get("published") or {}).get("url", "")
        from factory.demo.demo import BASE_ID

        random_base = loads_request(job.request).base_model == BASE_ID
        honesty = (f"\n\n**About these scores:** the base `{BASE_ID}` is randomly initialised, so its 0.000 is "
                   "guaranteed and the gain is simply the finetuned score; the held-out items are generated like "
                   "the training rows. In Chat, the base's replies are noise for the same reason. For a real "
                   "pretrained model learning a real skill: `factory demo --real`.") if random_base else ""
        return (pd.DataFrame(job_views.eval_rows(job), columns=headers),
                pd.DataFrame(job_views.contamination_rows(job), columns=["benchmark", "items", "overlap", "rate"]),
                job_views.contamination_note(job), body,
                (f"Published: [{job.hub_model_id}]({url})" if url else "Not published.") + honesty)

    def chat_models(profile: gr.OAuthProfile | None = None):
        user = who(profile)
        done = [j.hub_model_id for j in store.list(status="succeeded", limit=50)
                if j.hub_model_id and (user in store.limits.operators or j.submitter == user)]
        choices = list(dict.fromkeys(done + default_models(engine.hub)))
        return gr.update(choices=choices, value=choices[0] if choices else None)

    def results_when_changed(job_id, shown, profile: gr.OAuthProfile | None = None):
        """The Results tab follows the picked job: redrawn when its status changes, untouched otherwise."""
        try:
            job = store.get(int(job_id)) if job_id else None
        except (UserError, ValueError):
            job = None
        now = None if job is None else [job.id, job.status]
        if now == shown:
            return (gr.skip(),) * 6
        return (*results(job_id, profile), now)

    def chat_models_when_changed(current, known, profile: gr.OAuthProfile | None = None):
        """A model whose job just succeeded appears in Chat's list, picked; otherwise nothing changes."""
        choices = chat_models(profile)["choices"]
        if choices == known:
            return gr.skip(), gr.skip()
        new = [c for c in choices if c not in (known or [])]
        value = new[0] if new and known is not None else (current or (choices[0] if choices else None))
        return gr.update(choices=choices, value=value), choices

    def add_turn(message: str, left: list, right: list):
        turn = {"role": "user", "content": message}
        return "", left + [turn], right + [turn]

    def chat(model: str, left: list, right: list, temperature: float, max_new_tokens: float, seed: float,
             profile: gr.OAuthProfile | None = None, token: gr.OAuthToken | None = None):
        user = who(profile)
        if user is None:
            raise gr.Error("Sign in with Hugging Face to chat.")
        with chats_lock:
            if active_chats.get(user, 0) >= CHATS_PER_USER:
                raise gr.Error("You already have a chat reply streaming; wait for it or press Stop.")
            active_chats[user] = active_chats.get(user, 0) + 1
        try:
            if not model:
                raise gr.Error("Pick a model first.")
            secret = token.token if token is not None else None
            base = base_of(engine.locate(model, chat_hub(store, user, model, secret)))
            settings = Settings(float(temperature), 0.9, int(max_new_tokens), whole(seed))
            for side, ref, history in (("left", model, left), ("right", base, right)):
                if ref is None:
                    history.append({"role": "assistant", "content": "(the base of this model is unknown)"})
                    yield left, right
                    continue
                messages = [{"role": m["role"], "content": _text(m["content"])} for m in history]
                history.append({"role": "assistant", "content": ""})
                try:
                    reply = engine.stream(ref, messages, settings, chat_hub(store, user, ref, secret))
                except UserError as exc:
                    if side == "left":
                        raise
                    history[-1]["content"] = f"(the base `{ref}` is not offered here: {exc})"
                    yield left, right
                    continue
                for chunk in reply:
                    history[-1]["content"] += chunk
                    yield left, right
                if not history[-1]["content"].strip():
                    history[-1]["content"] = "(an empty reply: the model produced only special tokens)"
                    yield left, right
        except UserError as exc:
            raise gr.Error(str(exc)) from None
        finally:
            with chats_lock:
                active_chats[user] -= 1

    # ---- layout ------------------------------------------------------------------------------

    with gr.Blocks(title="Model factory") as app:
        with gr.Row():
            gr.Markdown("# Model factory\nFinetune an open model on a Hub dataset, watch it train, "
                        "compare it with its base.")
            if ON_SPACE:
                gr.LoginButton()
            else:
                gr.Markdown(f"Running locally as **{local_user()}** (no Hugging Face sign-in here; set "
                            "FACTORY_SPACE_USER to change it). Models go to the local hub.", elem_id="whoami")
        with gr.Tabs():
            with gr.Tab("New finetune", id="new"):
                with gr.Row():
                    with gr.Column(scale=3):
                        editor = gr.Code(example_request(local_user()), language="yaml", label="Request (YAML)",
                                         lines=24, elem_id="editor")
                    with gr.Column(scale=2):
                        inputs = []
                        for label, key, kind in FIELDS:
                            if isinstance(kind, list):
                                inputs.append(gr.Dropdown(kind, label=label, allow_custom_value=False))
                            elif kind == "number":
                                inputs.append(gr.Number(label=label))
                            else:
                                inputs.append(gr.Textbox(label=label, max_lines=1))
                with gr.Row():
                    preview_btn = gr.Button("Preview the label mask")
                    submit_btn = gr.Button("Submit", variant="primary", elem_id="submit")
                verdict = gr.Markdown(elem_id="findings")
                submitted = gr.Markdown(elem_id="submitted")
                mask = gr.HTML(elem_id="mask")
            with gr.Tab("Jobs", id="jobs"):
                table = gr.Dataframe(interactive=False, elem_id="jobs-table")
                with gr.Row():
                    picked = gr.Number(label="Job (click a row above, or type its number)", precision=0,
                                       elem_id="picked")
                    cancel_btn = gr.Button("Cancel job", variant="stop", visible=False, elem_id="cancel")
                headline = gr.Markdown(elem_id="headline")
                bar = gr.HTML(elem_id="progress")
                plot = gr.LinePlot(x="step", y="loss", color="split", title="Loss", height=260, elem_id="loss")
                with gr.Row():
                    log = gr.Textbox(label="Last events", lines=8, elem_id="events", min_width=320)
                    error = gr.Textbox(label="Error", lines=8, elem_id="error", min_width=320)
                cancelled = gr.Markdown(elem_id="cancelled")
            with gr.Tab("Results", id="results"):
                results_of = gr.State(None)  # (job, status) the tab shows: redrawn when the job's status changes
                link = gr.Markdown(elem_id="link")
                evals = gr.Dataframe(label="Base vs finetuned (same items)", interactive=False, elem_id="evals")
                cont = gr.Dataframe(label="Benchmark contamination", interactive=False)
                cont_note = gr.Markdown()
                card = gr.Markdown(elem_id="card")
            with gr.Tab("Chat", id="chat"):
                models_known = gr.State(None)  # the list as last shown: a model new to it gets picked
                with gr.Row():
                    model = gr.Dropdown(label="Finetuned model", allow_custom_value=True, elem_id="model")
                    temperature = gr.Slider(0, 2, value=0.0, step=0.1, label="Temperature")
                    max_new = gr.Slider(8, 512, value=64, step=8, label="Max new tokens")
                    seed = gr.Number(value=0, precision=0, label="Seed")
                with gr.Row():
                    left = gr.Chatbot(label="Finetuned", height=320, elem_id="left")
                    right = gr.Chatbot(label="Base", height=320, elem_id="right")
                with gr.Row():
                    prompt = gr.Textbox(placeholder="Ask both models…", show_label=False, scale=5, elem_id="prompt")
                    send = gr.Button("Send", variant="primary", scale=1)
                    stop = gr.Button("Stop", scale=1)

        # ---- events ----------------------------------------------------------------------------
        editor.change(findings, editor, verdict, trigger_mode="always_last", api_name="validate")
        # typing: "always_last", or keystrokes made while the previous one is handled are lost
        editor.input(fields_from_yaml, editor, inputs, api_visibility="private", trigger_mode="always_last")
        for box in inputs:
            box.input(yaml_from_fields, [editor, *inputs], editor, api_visibility="private", trigger_mode="always_last")
        preview_btn.click(show_preview, editor, mask, api_name="preview")
        submit_btn.click(submit, editor, [submitted, picked], api_name="submit")
        timer = gr.Timer(POLL_S)
        timer.tick(jobs_table, None, table, api_visibility="private")
        timer.tick(job_detail, picked, [headline, bar, plot, log, error], api_visibility="private")
        timer.tick(controls, picked, [cancel_btn, cancelled], api_visibility="private")
        timer.tick(results_when_changed, [picked, results_of], [evals, cont, cont_note, card, link, results_of],
                   api_visibility="private")
        timer.tick(chat_models_when_changed, [model, models_known], [model, models_known], api_visibility="private")
        picked.change(job_detail, picked, [headline, bar, plot, log, error], api_name="job")
        picked.change(results, picked, [evals, cont, cont_note, card, link], api_name="results")
        picked.change(controls, picked, [cancel_btn, cancelled], api_visibility="private")
        table.select(pick_row, None, picked, api_visibility="private")
        cancel_btn.click(cancel, picked, cancelled, api_name="cancel", js=CONFIRM_CANCEL)
        turn = prompt.submit(add_turn, [prompt, left, right], [prompt, left, right], queue=False,
                             api_visibility="private")
        streaming = turn.then(chat, [model, left, right, temperature, max_new, seed], [left, right],
                              api_name="chat", concurrency_limit=int(os.environ.get("FACTORY_SPACE_CHATS", "2")))
        clicked = send.click(add_turn, [prompt, left, right], [prompt, left, right], queue=False,
                             api_visibility="private")
        streaming2 = clicked.then(chat, [model, left, right, temperature, max_new, seed], [left, right],
                                  api_visibility="private", concurrency_limit=int(os.environ.get("FACTORY_SPACE_CHATS", "2")))
        stop.click(None, None, None, cancels=[streaming, streaming2])
        app.load(fields_from_yaml, editor, inputs, api_visibility="private")
        app.load(findings, editor, verdict, api_visibility="private")
        app.load(newest, None, picked, api_visibility="private")
        app.load(chat_models, None, model, api_visibility="private")
        app.load(jobs_table, None, table, api_visibility="private")
    return app


def pick_row(evt: gr.SelectData):
    return evt.row_value[0] if evt.row_value else None


def whole(value) -> int | None:
    """A seed from a number box: a whole number, or a clear error (1e30 and inf reach here from the page)."""
    if value is None:
        return None
    try:
        return int(value)
    except (OverflowError, ValueError):
        raise gr.Error(f"seed must be a whole number from 0 to {2**32 - 1}") from None


def _text(content) -> str:
    """Gradio 6 hands message content as a list of blocks; the engine wants plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content)


def start_worker(store: Store):
    """A worker in this process (`factory space --worker`): the newcomer's laptop runs its own jobs.

    Returns the Worker; set its `exiting` to stop it after the job in hand."""
    from factory.queue.worker import Worker

    worker = Worker(store, "space-worker")
    threading.Thread(target=worker.run, daemon=True, name="factory-worker").start()
    return worker


def ensure_demo_assets() -> None:
    """Offline (the local hub), the demo's base model and dataset, so the example request runs."""
    from factory.demo import demo
    from factory.hub.local import LocalHub
    from factory.hub.choose import default_hub
    from factory.base.progress import Console

    hub = default_hub()
    if isinstance(hub, LocalHub):
        demo.ensure_assets(hub, Console())


def launch(host: str = "127.0.0.1", port: int = 7860, worker: bool = False, block: bool = True):
    ensure_demo_assets()
    store = Store()
    if worker:
        start_worker(store)
    app = build(store)
    app.queue(default_concurrency_limit=4)
    return app.launch(server_name=host, server_port=port, css=CSS, prevent_thread_lock=not block,
                      show_error=True, footer_links=["api"])


if __name__ == "__main__":
    launch(host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if ON_SPACE else "127.0.0.1"),
           port=int(os.environ.get("PORT", os.environ.get("GRADIO_SERVER_PORT", "7860"))),
           worker=os.environ.get("FACTORY_SPACE_WORKER") == "1")
