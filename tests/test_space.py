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

    long_job = int(client.predict(short_demo(module, "hf:newcomer", max_steps=5000), api_name="/submit")[1]["value"])
    queued = int(client.predict(short_demo(module, "hf:newcomer"), api_name="/submit")[1]["value"])
    assert "cancelled" in client.predict(queued, api_name="/cancel") and store.get(queued).status == "cancelled"
    space["start_worker"]()
    wait_for(lambda: store.get(long_job).stage == "train" and store.get(long_job).progress > 0, 300, "training")
    assert "stopping" in client.predict(long_job, api_name="/cancel")
    wait_for(lambda: store.get(long_job).status == "cancelled", 120, "the running job to stop")

    job = int(client.predict(short_demo(module, "hf:newcomer"), api_name="/submit")[1]["value"])
    wait_for(lambda: store.get(job).status in ("succeeded", "failed"), 600, "the demo job")
    assert store.get(job).status == "succeeded", store.get(job).error
    headline, bar, plot, log, error = client.predict(job, api_name="/job")
    assert "succeeded" in headline and "100%" in bar and not error
    evals, cont, note, card, link = client.predict(job, api_name="/results")
    assert evals["data"][0][0] == "factory_demo_heldout" and evals["data"][0][2] == 20
    assert "newcomer/tiny-llama-demo" in link and "## Evaluation" in card and "overlapped" in note

    turn = {"role": "user", "content": [{"type": "text", "text": "What is this text about? guitar song"}]}
    chat = client.submit("newcomer/tiny-llama-demo", [turn], [turn], 0.0, 16, 0, api_name="/chat")
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
    for model, seed, word in ((str(folder), 0, "Hub repo id"), ("../runs/x", 0, "Hub repo id"),
                              ("factory/tiny-llama", 1e30, "seed")):
        with pytest.raises(Exception) as refused:
            client.predict(model, [turn], [turn], 0.0, 8, seed, api_name="/chat")
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
    _type_request(page, short_demo(module, "hf:newcomer", max_steps=400))
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
        page.locator("#progress").get_by_text("train").wait_for(timeout=60_000)
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
    page.locator("#link").get_by_text("newcomer/tiny-llama-demo").wait_for(timeout=60_000)
    expect(page.locator("#link")).to_contain_text("randomly initialised")  # the demo's 0.000 -> x, explained
    _shots(page, out, "6-results")

    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#model input")).to_have_value("newcomer/tiny-llama-demo", timeout=60_000)  # the new model, picked
    page.locator("#prompt textarea").fill("What is this text about? guitar song drums")
    page.locator("#prompt textarea").press("Enter")
    page.locator("#left .message.bot, #left [data-testid='bot']").first.wait_for(timeout=120_000)
    page.locator("#right .message.bot, #right [data-testid='bot']").first.wait_for(timeout=120_000)
    _shots(page, out, "7-chat")
    shots = sorted(p.name for p in out.glob("*.png"))
    assert len(shots) == 14, shots


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
    cost.wait_for(timeout=60_000)
    assert cost.inner_text().startswith("Estimated cost on Hugging Face Jobs: about ")
    assert "min on t4-medium (1x T4, $0.60/h): about $" in cost.inner_text()
    _shots(page, out, "preview-with-cost")
    page.get_by_role("button", name="Submit").click()
    page.locator("#submitted").get_by_text("Estimated cost on Hugging Face Jobs").wait_for(timeout=60_000)
    assert "min on t4-medium (1x T4, $0.60/h): about $" in page.locator("#submitted").inner_text()
    _shots(page, out, "queued-with-cost")
    assert space["store"].list(limit=1)[0].status == "queued"
