"""The real Hub client path (huggingface_hub) against a Hub-compatible server started by the tests:
token selection, downloads, a whole run with HfHub, publish (regular + LFS), re-publish, the adapter
alone, errors (401/403/404, 5xx with retries, a connection cut mid-upload), and no token anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from factory.base.errors import TransientError, UserError
from conftest import CANARY, fake_token  # tests/ is on sys.path under pytest

def _hf(server, **kw):
    from factory.hub.credentials import Token
    from factory.hub.hf_hub import HfHub

    return HfHub(Token(CANARY, "HF_TOKEN", server.url), server.url, retry_base_s=0.01, **kw)


def test_token_selection(monkeypatch, home, tmp_path):
    from factory.hub.credentials import hf_token
    from factory.hub.local import LocalHub
    from factory.hub.choose import default_hub

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no-login"))  # no `hf auth login` cache
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_TOKEN_PATH", str(tmp_path / "no-login" / "token"))
    assert hf_token() is None and isinstance(default_hub(), LocalHub)
    secrets = home / "secrets.env"
    home.mkdir(parents=True, exist_ok=True)
    secrets.write_text(f"DISCORD_TOKEN=abc\nHF_TOKEN={CANARY}\n")
    secrets.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        hf_token()
    secrets.chmod(0o600)
    token = hf_token()
    assert token.value == CANARY and token.source.startswith("secrets file") and CANARY not in repr(token)
    monkeypatch.setenv("HF_TOKEN", fake_token("fromTheEnvironment"))
    assert hf_token().source == "HF_TOKEN"
    with pytest.raises(UserError, match="not one this factory sends requests to"):
        default_hub("http://127.0.0.1:9")  # a request cannot point the operator's token elsewhere
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the operator can
    hub = default_hub()
    assert type(hub).__name__ == "HfHub" and "127.0.0.1:9" in hub.name and "HF_TOKEN" in hub.name
    assert hub.token.endpoint == "http://127.0.0.1:9"
    monkeypatch.setenv("FACTORY_HUB", "local")
    assert isinstance(default_hub(), LocalHub)


def test_downloads_only_what_a_finetune_needs_and_explains_errors(hub):
    hf = _hf(hub)
    path, rev = hf.snapshot("org/tiny-base")
    assert rev == hub.state.repos[("model", "org/tiny-base")].head()[0]
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    data, _ = hf.snapshot("org/songs", "dataset")
    assert (data / "data" / "train.jsonl").is_file()
    assert hf.exists("org/tiny-base") and not hf.exists("org/nothing-here")
    with pytest.raises(UserError, match="'org/nothing-here'.*was not found"):
        hf.snapshot("org/nothing-here")
    with pytest.raises(UserError, match="no revision 'deadbeef'"):
        hf.snapshot("org/tiny-base", revision="deadbeef")
    with pytest.raises(UserError, match="gated"):
        _hf_with_token(hub, fake_token("nobodyKnowsThisToken")).snapshot("org/gated-base")
    with pytest.raises(UserError, match="private and the token"):
        _hf_with_token(hub, fake_token("nobodyKnowsThisToken")).snapshot("org/private-base")
    assert hf.snapshot("org/private-base")[0].is_dir()  # the right token reads it


def _hf_with_token(server, value):
    from factory.hub.credentials import Token
    from factory.hub.hf_hub import HfHub

    return HfHub(Token(value, "a test token", server.url), server.url, retry_base_s=0.01)


def _request(tmp_path, **over) -> Path:
    req = {"base_model": "org/tiny-base", "datasets": [{"path": "org/songs", "type": "alpaca"}],
           "sequence_len": 64, "max_steps": 3, "adapter": "lora", "lora_target_linear": True,
           "learning_rate": 1e-3, "hub_model_id": "me/tiny-tuned", "val_set_size": 4, "bf16": False,
           "chat_template": "chatml", **over}
    path = tmp_path / "request.yaml"
    path.write_text(yaml.safe_dump(req))
    return path


def test_a_whole_run_against_the_hub_publishes_once_and_leaks_no_token(hub, home, tmp_path, capfd):
    import torch
    from transformers import AutoModelForCausalLM

    from factory.cli.main import main
    from factory.queue.jobs import Limits, Store
    from factory.queue.worker import Worker

    store = Store(limits=Limits(0, 0))
    request = _request(tmp_path)
    job = store.submit(request.read_text(), "alice", "cli")
    Worker(store, "w1").run(drain=True)
    assert store.get(job).status == "succeeded", store.get(job).error
    repo = hub.state.repos[("model", "me/tiny-tuned")]
    sha, files = repo.head()
    run_name = store.get(job).run_name
    assert len(repo.commits) == 2 and run_name in repo.commits[1][2]  # create_repo's, then ours, named after the job
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "loss.svg",
            "factory_request.yaml"} <= set(files)
    assert hub.state.lfs_uploads >= 1  # the weights went through LFS, the rest as regular files
    published = json.loads((home / "runs" / run_name / "published.json").read_text())
    assert published["revision"] == sha and published["url"].endswith("/me/tiny-tuned")

    from huggingface_hub import ModelCard

    card = ModelCard.load("me/tiny-tuned")  # downloaded again through the server
    assert card.content == files["README.md"].decode()
    assert card.data.base_model == "org/tiny-base" and card.data.license == "mit" and card.data.language == ["en"]
    assert card.data.datasets == ["org/songs"] and card.data.library_name == "transformers"
    base_rev = hub.state.repos[("model", "org/tiny-base")].head()[0]
    assert f"revision `{base_rev}`" in card.text  # the pinned base and dataset revisions
    data_rev = hub.state.repos[("dataset", "org/songs")].head()[0]
    assert f"`{data_rev[:12]}`" in card.text

    # A worker that crashed after its commit and retried (or `factory run` re-run) publishes the same run
    # folder again: no new commit, the same revision.
    from factory.request.config import loads_request
    from factory.run.pipeline import Run, execute
    from factory.base.progress import Console

    (home / "runs" / run_name / "stages" / "publish.json").unlink()
    again = execute(Run(request=loads_request(store.get(job).request), hub=_hf(hub), reporter=Console(),
                        dir=home / "runs" / run_name))
    assert again["publish"]["revision"] == sha and len(repo.commits) == 2

    # A second job whose content differs (another seed): exactly one new commit, named after that job.
    (tmp_path / "second").mkdir()
    job2 = store.submit(_request(tmp_path / "second", seed=7).read_text(), "alice", "cli")
    Worker(store, "w2").run(drain=True)
    assert store.get(job2).status == "succeeded", store.get(job2).error
    assert len(repo.commits) == 3 and store.get(job2).run_name in repo.commits[2][2]

    model = AutoModelForCausalLM.from_pretrained("me/tiny-tuned")  # through the server, like any Hub model
    local = AutoModelForCausalLM.from_pretrained(home / "runs" / store.get(job2).run_name / "merged")  # the head is job 2's
    ids = torch.tensor([[1, 5, 9, 14, 3]])
    with torch.no_grad():
        assert (model(input_ids=ids).logits - local(input_ids=ids).logits).abs().max() < 1e-6

    assert main(["run", str(request)]) == 0  # the CLI says which hub it uses
    out = capfd.readouterr()
    assert "token from HF_TOKEN" in out.err
    leaks = [str(p) for p in tmp_path.rglob("*") if p.is_file() and CANARY.encode() in p.read_bytes()]  # home, HF cache
    assert leaks == [] and CANARY not in out.out + out.err
    for j in store.list():
        assert CANARY not in json.dumps([str(v) for v in j.__dict__.values()])
        assert all(CANARY not in json.dumps(e.payload) for e in store.events(j.id))


def test_adapter_alone_is_a_peft_repo(hub, home, tmp_path):
    from factory.cli.main import main

    assert main(["run", str(_request(tmp_path, hub_model_id="me/tiny-adapter", publish={"adapter": True}))]) == 0
    _, files = hub.state.repos[("model", "me/tiny-adapter")].head()
    assert {"adapter_model.safetensors", "adapter_config.json", "README.md"} <= set(files)
    assert "model.safetensors" not in files
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["library_name"] == "peft" and meta["base_model_relation"] == "adapter"
    assert "AutoPeftModelForCausalLM" in files["README.md"].decode()


def test_retries_5xx_and_cut_connections_without_half_commits(hub, tmp_path):
    hf = _hf(hub)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(os.urandom(2048))
    (folder / "README.md").write_text("# v1\n")
    hub.state.fail_next = 2  # two 503s, then the Hub answers
    first = hf.publish("me/flaky", folder, "v1")
    assert first.created and sum(r.startswith("POST") for r in hub.state.requests) >= 2
    repo = hub.state.repos[("model", "me/flaky")]

    (folder / "README.md").write_text("# v2\n")
    hub.state.cut_commits = 1  # the commit's connection breaks once; the retry lands it whole
    second = hf.publish("me/flaky", folder, "v2")
    assert second.created and len(repo.commits) == 3 and repo.head()[1]["README.md"] == b"# v2\n"
    assert repo.head()[1]["model.safetensors"] == (folder / "model.safetensors").read_bytes()

    (folder / "README.md").write_text("# v3\n")
    hub.state.cut_commits = 10  # it keeps breaking: a transient error, and no new revision at all
    with pytest.raises(TransientError):
        hf.publish("me/flaky", folder, "v3")
    assert len(repo.commits) == 3 and repo.head()[1]["README.md"] == b"# v2\n"
    hub.state.cut_commits = 0

    assert not hf.publish("me/flaky", _same_as(folder, repo), "again").created  # unchanged: no commit
    assert len(repo.commits) == 3


def _same_as(folder: Path, repo) -> Path:
    (folder / "README.md").write_bytes(repo.head()[1]["README.md"])
    return folder


def test_write_refused_and_namespace_allow_list(hub, tmp_path, monkeypatch):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "README.md").write_text("x\n")
    with pytest.raises(UserError, match=r"may not do this|was not found"):
        _hf(hub).publish("someone-else/model", folder, "m")
    monkeypatch.setenv("FACTORY_ALLOWED_NAMESPACES", "team")
    with pytest.raises(UserError, match="not allowed on this factory"):
        _hf(hub).publish("me/model", folder, "m")
    from factory.cli.main import main

    assert main(["validate", str(_request(tmp_path))]) == 2  # refused at the door too
