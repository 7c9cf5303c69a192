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

from factory.frontdoor import job_views, request_form
from factory.frontdoor.request_form import FIELDS
from factory.frontdoor.chat_engine import ChatEngine, Settings, base_of, chat_hub, default_models
from factory.frontdoor.costs import cost_note
from factory.frontdoor.event_cache import EventCache
from factory.request.config import loads_request
from factory.base.errors import UserError
from factory.admission.admission import reader_hub
from factory.queue.jobs import Store

ON_SPACE = bool(os.environ.get("SPACE_ID"))
POLL_S = float(os.environ.get("FACTORY_SPACE_POLL_SECONDS", "2"))
CHATS_PER_USER = 1
TARGET = [key for _, key, _ in FIELDS].index("hub_model_id")

# The button asks first; declining sends -1, which cancels nothing (API callers are not asked).
CONFIRM_CANCEL = ("(job) => (job && confirm(`Cancel job ${job}? It stops at its next step; nothing is published.`))"
                  " ? job : -1")

CSS = """
nav:has(> a[data-sveltekit-reload]) { display: none !important; }  /* /model is opened from Results, not a menu
  (gr.Navbar(visible=False) does not hide it in Gradio 6.x) */
.mask-preview pre { white-space: pre-wrap; font-size: 13px; line-height: 1.5; margin: 4px 0 12px; }
.mask-preview .trained { background: #d9f2d9; color: #0b3d0b; border-radius: 3px; }
.mask-preview .masked { color: #8a8a8a; }
.mask-preview .row-label { font-weight: 600; font-size: 12px; color: #555; }
.stages { display: flex; gap: 3px; }
.stages .stage { flex: 1; position: relative; background: #eee; border-radius: 4px; height: 22px; overflow: hidden; }
.stages .stage > div { background: #3b82f6; height: 100%; }
.stages .stage.busy > div { background: repeating-linear-gradient(45deg, #3b82f6 0 8px, #93c5fd 8px 16px); }
.stages .stage span { position: absolute; inset: 0; font-size: 11px; line-height: 22px; text-align: center;
  color: #111; mix-blend-mode: normal; text-shadow: 0 0 3px #fff; overflow: hidden; }
.legend span { padding: 0 6px; border-radius: 3px; margin-right: 8px; }
@media (max-width: 640px) {  /* a phone: one column, the request short enough that Submit is on the first screen */
  #header { flex-direction: column !important; gap: 0 !important; }
  #header h1 { font-size: 1.5em; margin-bottom: 0; }
  #editor .cm-scroller { max-height: 34vh; }
  #fields .form { display: grid !important; grid-template-columns: 1fr 1fr; }
  #fields .form > * { min-width: 0 !important; }
  #actions { position: fixed; left: 0; right: 0; bottom: 0; z-index: 20; flex-wrap: nowrap !important;
    gap: 4px !important; background: var(--body-background-fill); padding: 6px 8px;
    box-shadow: 0 -2px 6px rgba(0, 0, 0, .15); }
  #submitted { padding-bottom: 64px; }  /* the fixed buttons never cover the last message */
  #actions button { min-width: 0 !important; padding: 6px 4px !important; font-size: 13px !important; }
  #jobs-table { font-size: 12px; }
  .stages .stage span { font-size: 9px; }
}
"""


def example_request(user: str) -> str:
    """The demo request as written (its comments too), published into the user's own namespace."""
    from factory.demo import demo

    values = [None] * len(FIELDS)
    values[TARGET] = f"{user.partition(':')[2] or 'me'}/tiny-llama-demo"
    return request_form.write(demo.REQUEST.read_text(), values, [TARGET])


def local_user() -> str:
    return "hf:" + (os.environ.get("FACTORY_SPACE_USER") or getpass.getuser())


def who(profile: gr.OAuthProfile | None) -> str | None:
    """hf:<username> of the signed-in user on a Space; the local user elsewhere; None when signed out."""
    if not ON_SPACE:
        return local_user()
    return f"hf:{profile.username}" if profile is not None else None


def build(store: Store | None = None, engine: ChatEngine | None = None) -> gr.Blocks:
    store = store or Store()
    engine = engine or ChatEngine(paths=False)  # a chat model is a Hub repo id, read as the user, never a folder
    cache = EventCache(store)  # every tab polling a job reads only its new events
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
        if not (text or "").strip():
            return "### Not accepted\n\n- The request is empty: press **Restore the example** to start from the demo."
        secret = token.token if token is not None else None
        try:
            request = admit(text, user, "space", hub_token=secret)
            lint = check_request(request, "space request", reader_hub(user, secret))
        except UserError as exc:
            return refusal(exc)
        from factory.admission.lint import RULES

        reasons = {r.id: r.reason for r in RULES}
        lines = [f"- **{f.severity}** `{f.rule}`: {html.escape(f.message)}  \n  _why: {reasons.get(f.rule, '')}_"
                 for f in lint]
        return "### Valid: ready to submit\n\n" + ("\n".join(lines) if lines else "No lint findings.")

    def fields_from_yaml(text: str):
        """The fields as the YAML has them, and that list as the page's record of what it filled in."""
        values = request_form.read(text)
        if values is None:  # not YAML yet: the fields keep what they show until it parses
            return [gr.skip() for _ in FIELDS] + [gr.skip()]
        return [gr.update(value=v) for v in values] + [values]

    def yaml_from_fields(text: str, synced, *values):
        """A field the user changed (typed, pasted, autofilled) goes into the YAML, comments kept; a field the
        page filled itself changes nothing, so there is no loop and no lost keystroke in the editor."""
        merged = request_form.with_edits(text, values, synced)
        if merged is None or merged == text:
            return gr.skip(), gr.skip()
        return merged, request_form.read(merged)

    def restore(profile: gr.OAuthProfile | None = None):
        text = example_request(who(profile) or "hf:me")
        return text, *fields_from_yaml(text)

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
            return f"<p>Cannot preview: {html.escape(str(exc))}</p>"
        cost = cost_note(request, hub)
        legend = ('<p class="legend"><span class="trained" style="background:#d9f2d9">trained tokens</span>'
                  '<span style="color:#8a8a8a">masked (not trained)</span></p>')
        return (f'<p class="cost">{html.escape(cost)}</p>' if cost else "") + legend + as_html(rows)

    def queue(text: str, profile, token) -> tuple[int | None, str]:
        """Queue the YAML as the user: (job, message), or (None, the refusal)."""
        user = who(profile)
        if user is None:
            return None, "Sign in with Hugging Face to submit."
        if not (text or "").strip():
            return None, findings(text, profile, token)
        try:
            job = store.submit(text, user, "space", hub_token=token.token if token is not None else None)
        except UserError as exc:
            return None, refusal(exc)
        cost = cost_note(loads_request(store.get(job).request), reader_hub(user, token.token if token else None))
        return job, f"### Queued as job {job}\n\n" + (f"{cost}\n\n" if cost else "") + "Follow it in the Jobs tab."

    def submit(text: str, synced, *values, profile: gr.OAuthProfile | None = None,
               token: gr.OAuthToken | None = None):
        """Queue exactly the YAML on the page. A field edit the YAML does not show yet is merged into it and
        nothing is queued: the user sees the request that would run, and its verdict, first."""
        keep = gr.skip()
        merged = request_form.with_edits(text, values, synced)
        if merged is not None and merged != text:
            now, was = request_form.read(merged), request_form.read(text)
            changed = ", ".join(label for (label, _, _), a, b in zip(FIELDS, now, was) if a != b)
            return keep, (f"**Not queued**: the YAML did not yet show your edit of {changed}. It does now: check the "
                          "request and its verdict above, then press Submit again."), keep, merged, now
        job, message = queue(text, profile, token)
        if job is None:  # the refusal goes where the verdict is, once
            return message, "", keep, keep, keep
        return keep, message, gr.update(value=job), keep, keep

    def submit_text(text: str, profile: gr.OAuthProfile | None = None,
                    token: gr.OAuthToken | None = None) -> tuple[str, int | None]:
        """The API's submit: the YAML alone. Returns the message and the job (None when refused)."""
        job, message = queue(text, profile, token)
        return message, job

    def jobs_table(profile: gr.OAuthProfile | None = None):
        """Four columns, so a phone shows the repo and the submitter too."""
        columns = ["job", "status", "repo", "by"]
        user = who(profile)
        if user is None:
            return pd.DataFrame(columns=columns)
        mine = None if user in store.limits.operators else user
        rows = [[j.id, job_state(j), j.hub_model_id or "", j.submitter.partition(":")[2] or j.submitter]
                for j in store.list(submitter=mine, limit=50)]
        return pd.DataFrame(rows, columns=columns)

    def newest(profile: gr.OAuthProfile | None = None):
        user = who(profile)
        jobs = store.list(submitter=None if user in store.limits.operators else user, limit=1) if user else []
        return jobs[0].id if jobs else None

    def job_detail(job_id, profile: gr.OAuthProfile | None = None):
        empty = ("Pick a job.", "", None, "", gr.update(value="", visible=False))
        user = who(profile)
        if not job_id or user is None:
            return empty
        try:
            job = store.get(int(job_id))
        except (UserError, ValueError):
            return ("No such job.",) + empty[1:]
        if job.submitter != user and user not in store.limits.operators:
            return ("That job is someone else's.",) + empty[1:]
        events = cache.events(job.id)
        p = job_views.progress(job, events)
        bar = stages_bar(job, p) + f"<p>{html.escape(job_views.status_line(job, events))}</p>"
        points = job_views.thinned(job_views.loss_points(events))
        frame = pd.DataFrame(points) if points else None  # an empty frame fixes a numeric colour scale (-Infinity)
        log = "\n".join(job_views.recent(events))
        where = {"succeeded": "published", "failed": f"failed in stage {job.stage or '-'}",
                 "cancelled": f"stopped in stage {job.stage or '-'}"}.get(
            job.status, f"stage {p.index} of {len(job_views.STAGES)}: {job.stage}" if p.index else "waiting for a worker")
        return (f"**job {job.id} {job.status}** · {where} · {job.hub_model_id or ''}", bar, frame, log,
                gr.update(value=job_views.failure(job), visible=job.status == "failed"))

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
        gguf, files = job_views.gguf_files(job)
        gguf_text = ("\n\n**GGUF** for llama.cpp, Ollama and LM Studio, "
                     + published_where(gguf["repo_id"], gguf["url"]).replace("Published", "published", 1)
                     + "\n" + "".join(f"\n- {line}" for line in files)) if gguf else ""
        return (pd.DataFrame(job_views.eval_rows(job), columns=headers),
                pd.DataFrame(job_views.contamination_rows(job), columns=["benchmark", "items", "overlap", "rate"]),
                job_views.contamination_note(job), body, published_where(job.hub_model_id, url) + gguf_text + honesty)

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

    def model_view(request: gr.Request, profile: gr.OAuthProfile | None = None):
        """/model?repo=owner/name: a model of the local hub, as the user may see it."""
        from factory.base.sizes import size_text
        from factory.frontdoor.model_page import local_model
        from factory.hub.local import LocalHub

        repo = (request.query_params.get("repo") or "").strip()
        user = who(profile)
        nothing = (pd.DataFrame(columns=["file", "size"]), gr.update(choices=[], value=None), "", None)
        if user is None:
            return "Sign in with Hugging Face to see models.", "", *nothing
        hub = reader_hub(user)
        if not isinstance(hub, LocalHub):
            return f"# {html.escape(repo)}", f"On the Hub: https://huggingface.co/{html.escape(repo)}", *nothing
        try:
            page = local_model(hub, repo)
        except UserError as exc:
            return "# No such model", html.escape(str(exc)), *nothing
        folder = job_views.public_text(str(page.folder)) if ON_SPACE else str(page.folder)
        names = [f for f, _ in page.files]
        return (f"[← Model factory](./)\n# {page.repo_id}\nRevision `{page.revision[:12]}` in this factory's local "
                "hub (it runs offline).",
                f"**Where it is:** `{folder}`\n\n" + page.snippet(folder),
                pd.DataFrame([[f, size_text(n)] for f, n in page.files], columns=["file", "size"]),
                gr.update(choices=names, value="README.md" if "README.md" in names else None),
                page.card.replace("![Training loss](loss.svg)", "(The loss curve is loss.svg, in the files above.)"),
                page.repo_id)

    def model_file(repo: str | None, name: str | None, profile: gr.OAuthProfile | None = None):
        from factory.frontdoor.model_page import download_copy, local_model
        from factory.hub.local import LocalHub

        user = who(profile)
        hub = reader_hub(user) if user else None
        if not repo or not name or not isinstance(hub, LocalHub):
            raise gr.Error("Pick a file first.")
        try:
            return str(download_copy(local_model(hub, repo), name))  # read again as the user: still theirs to see
        except UserError as exc:
            raise gr.Error(str(exc)) from None

    def add_turn(message: str, left: list, right: list):
        turn = {"role": "user", "content": message}
        return "", left + [turn], right + [turn]

    def chat(model: str, left: list, right: list, temperature: float, max_new_tokens: float, seed: float,
             tools_json: str = "", profile: gr.OAuthProfile | None = None, token: gr.OAuthToken | None = None):
        from factory.frontdoor.tool_schemas import parse

        user = who(profile)
        if user is None:
            raise gr.Error("Sign in with Hugging Face to chat.")
        try:
            tools = parse(tools_json)
        except UserError as exc:
            raise gr.Error(str(exc)) from None
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
                    reply = engine.stream(ref, messages, settings, chat_hub(store, user, ref, secret), tools)
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
        with gr.Row(elem_id="header"):
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
                                         lines=24, elem_id="editor", wrap_lines=True)
                    with gr.Column(scale=2, elem_id="fields"):
                        # the field values the page last filled in from the YAML; held in the page (not a State
                        # on the server), so a click sends it with the very editor text and fields it belongs to
                        synced = gr.JSON(None, visible=False)
                        inputs = []
                        for label, key, kind in FIELDS:
                            if isinstance(kind, list):
                                inputs.append(gr.Dropdown(kind, label=label, allow_custom_value=False))
                            elif kind == "number":
                                inputs.append(gr.Number(label=label))
                            else:
                                inputs.append(gr.Textbox(label=label, max_lines=1))
                with gr.Row(elem_id="actions"):
                    restore_btn = gr.Button("Restore the example", elem_id="restore")
                    preview_btn = gr.Button("Preview the label mask")
                    submit_btn = gr.Button("Submit", variant="primary", elem_id="submit")
                verdict = gr.Markdown(elem_id="findings")
                submitted = gr.Markdown(elem_id="submitted")
                mask = gr.HTML(elem_id="mask")
            with gr.Tab("Jobs", id="jobs"):
                table = gr.Dataframe(interactive=False, elem_id="jobs-table", wrap=True,
                                     column_widths=["15%", "33%", "36%", "16%"])
                with gr.Row():
                    picked = gr.Number(label="Job (click a row above, or type its number)", precision=0,
                                       elem_id="picked")
                    cancel_btn = gr.Button("Cancel job", variant="stop", visible=False, elem_id="cancel")
                headline = gr.Markdown(elem_id="headline")
                bar = gr.HTML(elem_id="progress")
                plot = gr.LinePlot(x="step", y="loss", color="split", height=260, elem_id="loss",
                                   title="Loss (and held-out task scores during training, 0 to 1)")
                with gr.Row():
                    log = gr.Textbox(label="Last events", lines=8, elem_id="events", min_width=320)
                    error = gr.Textbox(label="Error", lines=8, elem_id="error", min_width=320, visible=False)
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
                with gr.Accordion("Tools (JSON schemas, for a tool-calling model)", open=False):
                    tools_box = gr.Code("", language="json", lines=6, show_label=False, elem_id="tools")
                    gr.Markdown("A JSON list of functions (`name`, `description`, `parameters`). A model whose chat "
                                "template takes `tools` gets them there; any other gets them as its system message, "
                                "as the factory trains tool calling (`field_system: tools`).")
                with gr.Row():
                    prompt = gr.Textbox(placeholder="Ask both models…", show_label=False, scale=5, elem_id="prompt")
                    send = gr.Button("Send", variant="primary", scale=1)
                    stop = gr.Button("Stop", scale=1)

        # ---- events ----------------------------------------------------------------------------
        editor.change(findings, editor, verdict, trigger_mode="always_last", api_name="validate")
        # typing: "always_last", or keystrokes made while the previous one is handled are lost
        editor.input(fields_from_yaml, editor, [*inputs, synced], api_visibility="private", trigger_mode="always_last")
        for box in inputs:  # `change`, not `input`: a paste or an autofill fires only `change`
            box.change(yaml_from_fields, [editor, synced, *inputs], [editor, synced], api_visibility="private",
                       trigger_mode="always_last")
        restore_btn.click(restore, None, [editor, *inputs, synced], api_visibility="private")
        preview_btn.click(show_preview, editor, mask, api_name="preview")
        submit_btn.click(submit, [editor, synced, *inputs], [verdict, submitted, picked, editor, synced],
                         api_name="submit_page", api_visibility="private")  # "submit" is the API's (YAML alone)
        gr.api(submit_text, api_name="submit")
        editor.input(lambda: "", None, submitted, queue=False, api_visibility="private")  # no stale note under a new verdict
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
        streaming = turn.then(chat, [model, left, right, temperature, max_new, seed, tools_box], [left, right],
                              api_name="chat", concurrency_limit=int(os.environ.get("FACTORY_SPACE_CHATS", "2")))
        clicked = send.click(add_turn, [prompt, left, right], [prompt, left, right], queue=False,
                             api_visibility="private")
        streaming2 = clicked.then(chat, [model, left, right, temperature, max_new, seed, tools_box], [left, right],
                                  api_visibility="private", concurrency_limit=int(os.environ.get("FACTORY_SPACE_CHATS", "2")))
        stop.click(None, None, None, cancels=[streaming, streaming2])
        app.load(fields_from_yaml, editor, [*inputs, synced], api_visibility="private")
        app.load(findings, editor, verdict, api_visibility="private")
        app.load(newest, None, picked, api_visibility="private")
        app.load(chat_models, None, model, api_visibility="private")
        app.load(jobs_table, None, table, api_visibility="private")
    with app.route("Model", "/model", show_in_navbar=False) as model_route:
        opened = gr.State(None)  # the repo the page shows: downloads come from it alone
        head = gr.Markdown(elem_id="model-head")
        where = gr.Markdown(elem_id="model-where")
        files = gr.Dataframe(headers=["file", "size"], label="Files", interactive=False, elem_id="model-files")
        with gr.Row():
            wanted = gr.Dropdown(label="File", elem_id="model-file")
            fetch = gr.Button("Download", elem_id="model-download")
        got = gr.File(label="Download", elem_id="model-got", height=90)
        readme = gr.Markdown(elem_id="model-card")
        model_route.load(model_view, None, [head, where, files, wanted, readme, opened], api_visibility="private")
        fetch.click(model_file, [opened, wanted], got, api_visibility="private")
    return app


def job_state(job) -> str:
    """A job's state in a few words: 'running: train 45%', 'succeeded: done', 'failed in data'."""
    if job.status == "running":
        return f"running: {job.stage or 'starting'} {job.progress:.0%}"
    if job.status in ("failed", "cancelled") and job.stage:
        return f"{job.status} in {job.stage}"
    return "succeeded: done" if job.status == "succeeded" else job.status


def published_where(repo_id: str | None, url: str) -> str:
    """Where the model went, as a link a browser opens: the Hub's page, or this app's page for a model in
    the local hub (browsers refuse file:// links)."""
    if not url:
        return "Not published."
    if url.startswith("file:"):
        return (f"Published to this factory's local hub (it runs offline): [{repo_id}](model?repo={repo_id}) "
                "opens its page here, with the card, the files and how to load it. The card's "
                f'`from_pretrained("{repo_id}")` works once the model is on huggingface.co; until then, load it from '
                "the folder its page names.")
    return f"Published: [{repo_id}]({url})"


def stages_bar(job, p) -> str:
    """The whole job as one bar of stages: done ones full, the current one as far as it has got."""
    cells = []
    for i, name in enumerate(job_views.STAGES, start=1):
        if job.status == "succeeded" or (p.index and i < p.index):
            fill = 1.0
        elif p.index == i:
            fill = p.fraction if p.step is not None else 0.5 if job.status == "running" else 0.0
        else:
            fill = 0.0
        busy = " busy" if p.index == i and p.step is None and job.status == "running" else ""
        cells.append(f'<div class="stage{busy}" title="{name}"><div style="width:{fill * 100:.1f}%"></div>'
                     f"<span>{name}</span></div>")
    title = f"{p.fraction:.0%} of this stage" if job.status == "running" else job.status
    return f'<div class="stages" title="{title}">{"".join(cells)}</div>'


def refusal(exc: UserError) -> str:
    """A refusal, each line once, as text (a `<name>` in a message is shown, not read as HTML)."""
    lines = [html.escape(line.strip().removeprefix("space request: ")) for line in str(exc).splitlines()
             if line.strip() and line.strip() != "invalid request:"]
    return "### Not accepted\n\n" + "\n".join(f"- {line}" for line in lines)


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
