"""The Gradio Space: through gradio_client against a launched app, and as a person sees it in Debian's
chromium driven by Playwright (screenshots of each tab at 1280x800 and 390x844 in the test's folder)."""

from __future__ import annotations

import json
import os
import runpy
import socket
from pathlib import Path

import pytest
import yaml

from factory.frontdoor.job_views import STAGES
from test_jobs import wait_for  # tests/ is on sys.path under pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def short_demo(app_module, user: str, **over) -> str:
    """The demo request as the page offers it, cut short so a test can wait for it."""
    data = yaml.safe_load(app_module["example_request"](user))
    data.update({"max_steps": 40, "evals": {"tasks": ["factory_demo_heldout"], "limit": 20}, **over})
    return yaml.safe_dump(data, sort_keys=False)


@pytest.fixture
def space(home, monkeypatch):
    """The app over the embedded default (local hub, SQLite) on a free port; the worker starts on demand."""
    monkeypatch.setenv("FACTORY_SPACE_USER", "newcomer")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("FACTORY_SPACE_POLL_SECONDS", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("FACTORY_HUB", "local")
    module = runpy.run_path(str(ROOT / "spaces" / "app.py"), run_name="factory_space_test")
    module["ensure_demo_assets"]()
    from factory.queue.jobs import Store

    store = Store()
    app = module["build"](store)
    app.queue()
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, css=module["CSS"], quiet=True,
               show_error=True)
    workers = []

    def start_worker():
        workers.append(module["start_worker"](store))

    yield {"url": f"http://127.0.0.1:{port}/", "store": store, "module": module, "start_worker": start_worker}
    app.close()
    for w in workers:
        w.exiting = True  # stops polling (its thread is a daemon)


def test_through_gradio_client(space):
    from gradio_client import Client

    client, store, module = Client(space["url"], verbose=False), space["store"], space["module"]
    bad = client.predict(short_demo(module, "hf:newcomer", hub_model_id="someone/else"), api_name="/validate")
    assert "Not accepted" in bad and "own-namespace" in bad
    local = client.predict(short_demo(module, "hf:newcomer", base_model="/etc"), api_name="/validate")
    assert "not a repo id" in local
    assert "Valid" in client.predict(short_demo(module, "hf:newcomer"), api_name="/validate")

    refused, none = client.predict(short_demo(module, "hf:newcomer", hub_model_id="someone/else"), api_name="/submit")
    assert none is None and "own-namespace" in refused and "newcomer/&lt;name&gt;" in refused  # shown, not eaten
    long_job = int(client.predict(short_demo(module, "hf:newcomer", max_steps=5000), api_name="/submit")[1])
    queued = int(client.predict(short_demo(module, "hf:newcomer"), api_name="/submit")[1])
    assert "cancelled" in client.predict(queued, api_name="/cancel") and store.get(queued).status == "cancelled"
    space["start_worker"]()
    wait_for(lambda: store.get(long_job).stage == "train" and store.get(long_job).progress > 0, 300, "training")
    assert "stopping" in client.predict(long_job, api_name="/cancel")
    wait_for(lambda: store.get(long_job).status == "cancelled", 120, "the running job to stop")

    job = int(client.predict(short_demo(module, "hf:newcomer"), api_name="/submit")[1])
    wait_for(lambda: store.get(job).status in ("succeeded", "failed"), 600, "the demo job")
    assert store.get(job).status == "succeeded", store.get(job).error
    headline, bar, plot, log, error = client.predict(job, api_name="/job")
    error = error.get("value") if isinstance(error, dict) else error  # the box is shown only when the job failed
    assert "succeeded" in headline and f"job {job}: succeeded" in bar and bar.count("width:100.0%") == len(STAGES) and not error
    evals, cont, note, card, link = client.predict(job, api_name="/results")
    assert evals["data"][0][0] == "factory_demo_heldout" and evals["data"][0][2] == 20
    assert "newcomer/tiny-llama-demo" in link and "## Evaluation" in card and "overlapped" in note

    turn = {"role": "user", "content": [{"type": "text", "text": "What is this text about? guitar song"}]}
    tools = json.dumps([{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}])
    chat = client.submit("newcomer/tiny-llama-demo", [turn], [turn], 0.0, 16, 0, tools, api_name="/chat")
    updates = list(chat)
    assert len(updates) > 1, chat.exception() or chat.status()  # it streamed
    left, right = updates[-1]
    assert left[-1]["role"] == "assistant" and right[-1]["role"] == "assistant"


def test_strangers_through_the_space(space, home, tmp_path):
    """The second round's findings, as a stranger sends them through the page's own API."""
    from gradio_client import Client

    from factory.hub.local import LocalHub

    client, module = Client(space["url"], verbose=False), space["module"]
    hostile = short_demo(module, "hf:newcomer", model_config={"subfolder": "../../../../runs/job-3/merged"})
    assert "operator-only: `model_config`" in client.predict(hostile, api_name="/validate")
    private = tmp_path / "private-songs"
    (private / "data").mkdir(parents=True)
    (private / "data" / "train.jsonl").write_text('{"instruction": "secret", "output": "kept"}\n' * 30)
    LocalHub(home / "hub").publish("org/private-songs", private, "the operator's", "dataset", private=True)
    theirs = short_demo(module, "hf:newcomer", datasets=[{"path": "org/private-songs", "type": "alpaca"}])
    assert "was not found, or you may not read it" in client.predict(theirs, api_name="/validate")
    assert "Cannot preview" in client.predict(theirs, api_name="/preview")
    turn = {"role": "user", "content": [{"type": "text", "text": "hello"}]}
    folder, _ = LocalHub(home / "hub").snapshot("factory/tiny-llama")
    for model, seed, tools, word in ((str(folder), 0, "", "Hub repo id"), ("../runs/x", 0, "", "Hub repo id"),
                                     ("factory/tiny-llama", 1e30, "", "seed"),
                                     ("factory/tiny-llama", 0, '[{"description": "x"}]', 'each tool is an object')):
        with pytest.raises(Exception) as refused:
            client.predict(model, [turn], [turn], 0.0, 8, seed, tools, api_name="/chat")
        assert word in str(refused.value), str(refused.value)
    assert str(home) not in str(refused.value)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        from conftest import missing

        missing("Debian's chromium is not installed (apt-get install chromium)", "FACTORY_REQUIRE_BROWSER")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-quic"])
        yield b
        b.close()


def _shots(page, out: Path, name: str) -> None:
    for w, h, label in ((1280, 800, "desktop"), (390, 844, "phone")):
        page.set_viewport_size({"width": w, "height": h})
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / f"{name}-{label}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})


def _type_request(page, text: str) -> None:
    editor = page.locator("#editor .cm-content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(text)


def test_in_a_real_browser(space, browser, tmp_path):
    import re

    from playwright.sync_api import expect

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    store, module = space["store"], space["module"]
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(space["url"])
    page.get_by_text("Running locally as").wait_for(timeout=60_000)
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    _shots(page, out, "1-new-finetune")

    # a guided field out of the user's namespace: the finding appears, with its rule
    target = page.get_by_label("Target repo")
    target.click()
    page.keyboard.press("Control+A")
    target.press_sequentially("someone/else")  # typed, as a person types
    try:
        page.locator("#findings").get_by_text("own-namespace").wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=str(out / "failed.png"))
        raise AssertionError(page.locator("#findings").inner_text() + " | " + target.input_value())
    # a request naming a local file: refused on the page with the policy's message
    _type_request(page, short_demo(module, "hf:newcomer", datasets=[{"path": "/etc/passwd.jsonl"}]))
    page.locator("#findings").get_by_text("hub-ids-only").wait_for(timeout=60_000)
    _shots(page, out, "2-refused")

    # long enough that the Jobs tab can be looked at while it trains (40 steps end within a poll or two)
    _type_request(page, short_demo(module, "hf:newcomer", max_steps=400, export={"gguf": ["q8_0"]}))
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    page.get_by_role("button", name="Preview the label mask").click()
    page.locator("#mask .trained").first.wait_for(timeout=60_000)
    assert page.locator("#mask .masked").count() > 0
    _shots(page, out, "3-mask-preview")

    space["start_worker"]()
    page.get_by_role("button", name="Submit").click()
    page.locator("#submitted").get_by_text("Queued as job").wait_for(timeout=60_000)
    job = store.list(limit=1)[0].id
    page.get_by_role("tab", name="Jobs").click()
    from factory.frontdoor.job_views import loss_points

    wait_for(lambda: store.get(job).stage == "train" and len(loss_points(store.events(job))) >= 3, 300,
             "three logged losses")
    page.wait_for_timeout(2500)  # a poll or two: the curve has its points
    page.locator("#loss canvas, #loss svg").first.wait_for(timeout=60_000)
    try:
        page.locator("#progress").get_by_text("stage 3 of 8, train").wait_for(timeout=60_000)  # where in the job
    except Exception:
        page.screenshot(path=str(out / "failed.png"), full_page=True)
        raise AssertionError(f"#progress: {page.locator('#progress').inner_text()!r}; job {store.get(job)}") from None
    _shots(page, out, "4-jobs-training")
    expect(page.locator("#events textarea")).to_have_value(re.compile(r"train \d+/400, loss"), timeout=60_000)  # live
    expect(page.locator("#cancel")).to_be_visible(timeout=60_000)  # something to cancel: the button is there
    asked = []

    def decline(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", decline)
    page.locator("#cancel").click()
    expect(page.locator("#cancelled")).to_contain_text("Not cancelled", timeout=60_000)
    assert asked and f"Cancel job {job}?" in asked[0] and store.get(job).status == "running", asked

    page.reload()  # mid-job: nothing is lost, the newest job is shown again
    page.get_by_role("tab", name="Jobs").click()
    page.locator("#headline").get_by_text(f"job {job}").or_(page.locator("#progress").get_by_text(f"job {job}")).first \
        .wait_for(timeout=60_000)
    wait_for(lambda: store.get(job).status in ("succeeded", "failed"), 600, "the job to finish")
    assert store.get(job).status == "succeeded", store.get(job).error
    page.locator("#headline").get_by_text("succeeded").wait_for(timeout=60_000)
    expect(page.locator("#headline")).to_contain_text("published", timeout=60_000)
    expect(page.locator("#cancel")).to_be_hidden(timeout=60_000)  # nothing left to cancel
    expect(page.locator("#jobs-table")).to_contain_text("done")
    _shots(page, out, "5-jobs-done")

    # no reload: Results and Chat follow the job on their own
    page.get_by_role("tab", name="Results").click()
    expect(page.locator("#evals")).to_contain_text("factory_demo_heldout", timeout=60_000)
    page.locator("#link a").get_by_text("newcomer/tiny-llama-demo", exact=True).wait_for(timeout=60_000)
    expect(page.locator("#link")).to_contain_text("randomly initialised")  # the demo's 0.000 -> x, explained
    # the GGUF companion repo, each file with its size, perplexity and the command that runs it
    expect(page.locator("#link")).to_contain_text("ollama run hf.co/newcomer/tiny-llama-demo-GGUF:Q8_0")
    expect(page.locator("#link")).to_contain_text("tiny-llama-demo-Q8_0.gguf")
    assert page.locator("#link a").get_by_text("newcomer/tiny-llama-demo-GGUF").get_attribute("href") == \
        "model?repo=newcomer/tiny-llama-demo-GGUF"
    _shots(page, out, "6-results")

    # offline, the link opens the model's page in this app (a browser refuses file://), as the user sees it
    href = page.locator("#link a").first.get_attribute("href")
    assert href == "model?repo=newcomer/tiny-llama-demo", href
    with page.context.expect_page() as opened:  # a link in the page's markdown opens a new tab
        page.locator("#link a").first.click()
    results_page, page = page, opened.value
    expect(page.locator("#model-head")).to_contain_text("newcomer/tiny-llama-demo", timeout=60_000)
    expect(page.locator("#model-files")).to_contain_text("model.safetensors")
    expect(page.locator("#model-card")).to_contain_text("Evaluation")
    expect(page.locator("#model-where")).to_contain_text("from_pretrained(folder)")
    folder = page.locator("#model-where code").first.inner_text()
    assert Path(folder, "config.json").is_file(), folder  # the folder it names is the model
    with page.expect_download() as got:
        page.locator("#model-download").click()
        page.locator("#model-got a").first.click(timeout=60_000)
    assert got.value.suggested_filename == "README.md"
    _shots(page, out, "6b-model-page")
    page.close()
    page = results_page

    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#model input")).to_have_value("newcomer/tiny-llama-demo", timeout=60_000)  # the new model, picked
    page.get_by_text("Tools (JSON schemas, for a tool-calling model)").click()  # tools reach the models too
    page.locator("#tools .cm-content").click()
    page.keyboard.insert_text('[{"name": "get_weather", "parameters": {"type": "object", "properties": {}}}]')
    page.locator("#prompt textarea").fill("What is this text about? guitar song drums")
    page.locator("#prompt textarea").press("Enter")
    page.locator("#left .message.bot, #left [data-testid='bot']").first.wait_for(timeout=120_000)
    page.locator("#right .message.bot, #right [data-testid='bot']").first.wait_for(timeout=120_000)
    _shots(page, out, "7-chat")
    shots = sorted(p.name for p in out.glob("*.png"))
    assert len(shots) == 16, shots


def _within(shown, stored) -> bool:
    """Every value the page showed is the queued request's (which adds the defaults)."""
    if isinstance(shown, dict):
        return isinstance(stored, dict) and all(_within(v, stored.get(k)) for k, v in shown.items())
    if isinstance(shown, list):
        return isinstance(stored, list) and len(shown) == len(stored) and all(map(_within, shown, stored))
    return shown == stored or (isinstance(shown, (int, float)) and isinstance(stored, (int, float)) and
                               float(shown) == float(stored))


def _editor_text(page) -> str:
    return page.locator("#editor .cm-content").inner_text()


def test_the_score_curve_beside_the_loss_in_a_real_browser(space, browser, tmp_path):
    """A job that scores its held-out task at each evaluation: the Jobs tab's plot carries the score curve
    (one point per evaluation, from the job's own events) beside the train and eval losses."""
    from gradio_client import Client

    from factory.frontdoor.job_views import loss_points

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots")) / "scores"
    out.mkdir(parents=True, exist_ok=True)
    client, module, store = Client(space["url"], verbose=False), space["module"], space["store"]
    request = short_demo(module, "hf:newcomer", max_steps=12, val_set_size=0.05, eval_steps=4,
                         evals={"tasks": ["factory_demo_heldout"], "limit": 20, "during_training_limit": 8})
    job = int(client.predict(request, api_name="/submit")[1])
    space["start_worker"]()
    scored_steps = lambda: [p["step"] for p in loss_points(store.events(job))  # noqa: E731
                            if p["split"] == "factory_demo_heldout score"]
    wait_for(lambda: len(scored_steps()) >= 3 or store.get(job).status in ("done", "failed", "refused"), 900,
             "three evaluations during training", interval=1.0)
    points = loss_points(store.events(job))
    scored = [p for p in points if p["split"] == "factory_demo_heldout score"]
    assert [p["step"] for p in scored] == [4, 8, 12], points  # one point per evaluation
    assert [p["step"] for p in points if p["split"] == "eval"] == [4, 8, 12], points  # at the steps evaluated
    assert {p["split"] for p in points} >= {"train", "eval", "factory_demo_heldout score"}
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(space["url"])
    page.get_by_text("Running locally as").wait_for(timeout=60_000)
    page.get_by_role("tab", name="Jobs").click()
    page.get_by_label("Job (click a row above, or type its number)").fill(str(job))
    page.keyboard.press("Enter")
    page.locator("#loss canvas, #loss svg").first.wait_for(timeout=60_000)
    page.wait_for_timeout(2500)  # a poll: the plot has its points
    legend = page.locator("#loss").inner_text()
    page.locator("#loss").screenshot(path=str(out / "score-curve.png"))
    _shots(page, out, "jobs-with-scores")
    assert "factory_demo_heldout score" in legend and "eval" in legend, legend


def test_the_form_and_the_yaml_are_one_request(space, browser, tmp_path):
    """What the newcomer did: paste a dataset id into its field, then Submit. The YAML follows every kind of
    field change (paste, autofill, typing) with its comments kept, the verdict judges that text, and what
    is queued is exactly what the page shows."""
    from playwright.sync_api import expect

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots")) / "form"
    out.mkdir(parents=True, exist_ok=True)
    store = space["store"]
    context = browser.new_context(viewport={"width": 1280, "height": 800},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(space["url"])
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    first = _editor_text(page)
    assert "# The embedded default" in first and "{factory_home}" not in first, first  # comments, no placeholders
    dataset = page.get_by_label("Dataset (Hub id)")
    expect(dataset).to_have_value("factory/demo-instructions", timeout=60_000)

    def paste(field, text):
        page.evaluate("(t) => navigator.clipboard.writeText(t)", text)
        field.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Control+V")

    paste(dataset, "newcomer/not-a-dataset")  # a paste fires no `input` event
    expect(page.locator("#editor .cm-content")).to_contain_text("path: newcomer/not-a-dataset", timeout=60_000)
    expect(page.locator("#findings")).to_contain_text("newcomer/not-a-dataset", timeout=60_000)
    expect(page.locator("#findings")).to_contain_text("check the", timeout=60_000)
    assert "Valid" not in page.locator("#findings").inner_text()
    text = _editor_text(page)
    assert "# The embedded default" in text and "# The held-out questions" in text  # comments kept
    assert text.count("\n") == first.count("\n")  # one line changed, none dropped or added
    _shots(page, out, "pasted-dataset")

    page.get_by_label("Target repo").fill("newcomer/filled-in")  # what an autofill does
    expect(page.locator("#editor .cm-content")).to_contain_text("hub_model_id: newcomer/filled-in", timeout=60_000)

    page.get_by_role("button", name="Submit").click()  # refused: shown once, where the verdict is
    expect(page.locator("#findings")).to_contain_text("Not accepted", timeout=60_000)
    expect(page.locator("#submitted")).to_have_text("")
    assert page.locator("body").inner_text().count("was not found") == 1
    assert "factory demo" not in page.locator("#findings").inner_text()  # no terminal commands for a page user

    # the newcomer's case: paste, then straight to Submit. Whatever is queued is the YAML the page shows.
    paste(dataset, "factory/demo-instructions")
    page.get_by_role("button", name="Submit").click()
    queued = page.locator("#submitted").get_by_text("Queued as job")
    merged = page.locator("#submitted").get_by_text("Not queued")
    queued.or_(merged).first.wait_for(timeout=60_000)
    if merged.count():  # the click beat the field's sync: nothing queued, the YAML now shows the paste
        assert store.list(limit=1) == []
        expect(page.locator("#editor .cm-content")).to_contain_text("path: factory/demo-instructions")
        page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
        page.get_by_role("button", name="Submit").click()
        queued.wait_for(timeout=60_000)
    job = store.list(limit=1)[0]
    shown = yaml.safe_load(_editor_text(page).replace("\u00a0", " "))
    assert _within(shown, yaml.safe_load(job.request)), (shown, job.request)  # every key as the page showed it
    assert "path: factory/demo-instructions" in job.request and "newcomer/filled-in" in job.request
    _shots(page, out, "queued")

    _type_request(page, "")  # an empty editor: the fix is a button on this page
    expect(page.locator("#findings")).to_contain_text("Restore the example", timeout=60_000)
    page.get_by_role("button", name="Restore the example").click()
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    assert _editor_text(page).startswith("# The embedded default")
    expect(dataset).to_have_value("factory/demo-instructions")
    context.close()


def test_on_a_phone(space, browser, tmp_path):
    """390x844: the header stacks, YAML lines wrap, Submit is on the first screen, the jobs table shows the
    repo and who submitted it."""
    from playwright.sync_api import expect

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots")) / "phone"
    out.mkdir(parents=True, exist_ok=True)
    space["store"].submit(short_demo(space["module"], "hf:newcomer"), "hf:newcomer", "space")  # queued: no worker
    page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page.goto(space["url"])
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    page.screenshot(path=str(out / "new-finetune.png"))
    assert not page.locator("nav").first.is_visible()  # no menu bar over the header for a page reached by link
    submit = page.get_by_role("button", name="Submit").bounding_box()
    assert submit and submit["y"] + submit["height"] <= 844 and submit["x"] + submit["width"] <= 390, submit
    title = page.get_by_role("heading", name="Model factory").bounding_box()
    whoami = page.locator("#whoami").bounding_box()
    assert whoami["y"] >= title["y"] + title["height"] - 1, (title, whoami)  # stacked, not squeezed side by side
    overflow = page.locator("#editor .cm-scroller").evaluate("e => e.scrollWidth - e.clientWidth")
    assert overflow <= 1, overflow  # long lines wrap instead of running off the screen
    page.get_by_role("tab", name="Jobs").click()
    expect(page.locator("#jobs-table")).to_contain_text("newcomer/tiny-llama-demo", timeout=60_000)
    for name in ("repo", "by"):
        cell = page.locator("#jobs-table th").filter(has_text=name).first.bounding_box()
        assert cell and cell["x"] + cell["width"] <= 390 + 1, (name, cell)
    page.screenshot(path=str(out / "jobs.png"))


def test_the_space_folder_passes_the_hubs_metadata_check(hub, tmp_path, capsys):
    from huggingface_hub import RepoCard

    from factory.cli.main import main

    out = tmp_path / "space"
    assert main(["space-folder", str(out)]) == 0
    assert {p.name for p in out.iterdir()} >= {"app.py", "README.md", "requirements.txt", "factory", "evals"}
    card = RepoCard.load(out / "README.md")
    card.validate(repo_type="space")  # POST /api/validate-yaml on the test server, which applies the Space rules
    meta = card.data.to_dict()
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["hf_oauth"] is True
    assert {"write-repos", "manage-repos"} <= set(meta["hf_oauth_scopes"]) and meta["hf_oauth_expiration_minutes"] >= 60
    broken = RepoCard(card.content.replace("sdk: gradio", "sdk: gradioo"))
    with pytest.raises(ValueError, match="sdk"):
        broken.validate(repo_type="space")
    requirements = (out / "requirements.txt").read_text()
    assert "gradio[oauth]" in requirements and "transformers" in requirements
    assert main(["space-folder", str(out)]) == 2  # never over an existing folder


def test_with_the_jobs_backend_the_page_shows_the_cost_before_and_after_submit(space, browser, tmp_path, monkeypatch):
    from hub_server import HARDWARE

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots")) / "jobs-backend"
    out.mkdir(parents=True, exist_ok=True)
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps(HARDWARE))
    monkeypatch.setenv("FACTORY_BACKEND", "hf-jobs")
    monkeypatch.setenv("FACTORY_JOBS_PRICES", str(prices))
    monkeypatch.setenv("FACTORY_JOBS_FLAVOR", "t4-small")
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(space["url"])
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    _type_request(page, short_demo(space["module"], "hf:newcomer", compute={"flavor": "t4-medium"}))
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    page.get_by_role("button", name="Preview the label mask").click()
    cost = page.locator("#mask .cost")
    try:
        cost.wait_for(timeout=60_000)
    except Exception:
        page.screenshot(path=str(out / "failed.png"), full_page=True)
        raise AssertionError(f"#mask: {page.locator('#mask').inner_text()!r}; editor: {_editor_text(page)!r}") from None
    assert cost.inner_text().startswith("Estimated cost on Hugging Face Jobs: about ")
    assert "min on t4-medium (1x T4, $0.60/h): about $" in cost.inner_text()
    _shots(page, out, "preview-with-cost")
    page.get_by_role("button", name="Submit").click()
    page.locator("#submitted").get_by_text("Estimated cost on Hugging Face Jobs").wait_for(timeout=60_000)
    assert "min on t4-medium (1x T4, $0.60/h): about $" in page.locator("#submitted").inner_text()
    _shots(page, out, "queued-with-cost")
    assert space["store"].list(limit=1)[0].status == "queued"


def test_the_method_field_writes_rl_into_the_request(space, browser, tmp_path):
    """The form offers the preference methods: choosing DPO writes `rl: dpo` into the YAML (comments kept) and the
    verdict says what the data must then be; Format preference makes it valid; back to SFT removes the key."""
    from playwright.sync_api import expect

    out = Path(os.environ.get("FACTORY_SCREENSHOTS", tmp_path / "screenshots")) / "method"
    out.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(space["url"])
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    lines = _editor_text(page).count("\n")

    def choose(label, option):
        page.get_by_label(label).click()
        page.get_by_role("option", name=option, exact=True).click()

    choose("Method", "DPO")
    expect(page.locator("#editor .cm-content")).to_contain_text("rl: dpo", timeout=60_000)
    expect(page.locator("#findings")).to_contain_text("rl: dpo trains on chosen/rejected pairs", timeout=60_000)
    assert "# The embedded default" in _editor_text(page)
    _shots(page, out, "dpo-chosen")
    choose("Format", "preference")
    expect(page.locator("#editor .cm-content")).to_contain_text("type: preference", timeout=60_000)
    expect(page.locator("#findings")).not_to_contain_text("rl: dpo trains on", timeout=60_000)
    _shots(page, out, "dpo-preference")
    choose("Method", "supervised (SFT)")
    expect(page.locator("#editor .cm-content")).not_to_contain_text("rl:", timeout=60_000)
    choose("Format", "alpaca")
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    assert _editor_text(page).count("\n") == lines  # back where it started
    choose("GGUF export", "Q4_K_M (small)")  # the form offers the export: the list is written into the YAML
    expect(page.locator("#editor .cm-content")).to_contain_text("- q4_k_m", timeout=60_000)
    assert "export:" in _editor_text(page) and "# The embedded default" in _editor_text(page)
    page.locator("#findings").get_by_text("Valid").wait_for(timeout=60_000)
    _shots(page, out, "gguf-chosen")
    page.close()
