"""GGUF export: files llama.cpp itself loads and answers from (llama-cpp-python), the same greedy tokens as
transformers for F16, perplexity close to F16's for the quantised types, the chat template and tokenizer
as transformers has them, `factory import` of the file gives the weights back; refusals by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import missing

TEXTS = ["<|im_start|>user\nWhat is 12 plus 7?<|im_end|>\n<|im_start|>assistant\n",
         "Hello world, the numbers 123 and 4567 appear here.\n\n  Indented line\twith a tab.",
         "Ünïcödé and emoji 🦙 and 'quotes' it's I'll we've."]


@pytest.fixture(scope="module")
def llama_cpp():
    from evals import gguf_runs

    if not gguf_runs.available():
        missing("llama-cpp-python is not installed (the `dev` and `gguf` extras build it)", "FACTORY_REQUIRE_EXTRAS")
    return gguf_runs


def write_tiny(dest: Path, arch: str = "llama", tokenizer=None, seed: int = 0) -> Path:
    """A tiny random model of the architecture with the demo's tokenizer (or the one given), weights rounded to F16
    so an F16 file holds exactly the model transformers runs."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, \
        Qwen2ForCausalLM

    from factory.demo.synthetic import corpus_for_tokenizer
    from factory.demo.tiny import build_tokenizer

    tok = tokenizer or build_tokenizer(corpus_for_tokenizer(seed))
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    config, cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM),
                   "mistral": (MistralConfig, MistralForCausalLM)}[arch]
    model = cls(config(**common, tie_word_embeddings=arch == "qwen2"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.normal_(1.0, 0.1) if name.endswith("norm.weight") else p.normal_(0, 0.1)
            else:  # a wide output layer spreads the logits: greedy never hangs on a near-tie
                p.normal_(0, 0.5 if "lm_head" in name or "embed" in name else 0.08)
            p.copy_(p.half().float())
    model.save_pretrained(dest)
    tok.save_pretrained(dest)
    return dest


def hf_greedy(model_dir: Path, ids: list[int], n: int) -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                         pad_token_id=0, eos_token_id=None)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_f16_gives_transformers_greedy_tokens_in_llama_cpp(arch, llama_cpp, tmp_path):
    from transformers import AutoTokenizer

    from factory.publish.gguf_export import export

    model_dir = write_tiny(tmp_path / arch, arch)
    files = export(model_dir, tmp_path / "out", ["f16"], "tiny")
    assert [f["file"] for f in files] == ["tiny-F16.gguf"] and files[0]["pre"] == "smollm"
    tok = AutoTokenizer.from_pretrained(model_dir)
    llm = llama_cpp.load(Path(files[0]["path"]), n_ctx=256)
    for text in TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert llama_cpp.tokenize(llm, text) == ids, text  # llama.cpp splits text as transformers does
        assert llama_cpp.greedy(llm, ids, 16) == hf_greedy(model_dir, ids, 16), text
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert llama_cpp.chat_prompt(Path(files[0]["path"]), messages) == \
        tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def test_quantised_types_load_and_stay_close_to_f16(llama_cpp, tmp_path):
    from transformers import AutoTokenizer

    from factory.publish.gguf_export import export

    model_dir = write_tiny(tmp_path / "m")
    files = export(model_dir, tmp_path / "out", ["f16", "q8_0", "q4_k_m", "q4_0", "bf16"], "tiny")
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = [tok(t)["input_ids"] for t in TEXTS]
    ppl = {}
    for f in files:
        llm = llama_cpp.load(Path(f["path"]), n_ctx=256, logits_all=True)
        ppl[f["type"]] = llama_cpp.perplexity(llm, ids)["perplexity"]
        llm.close()
    sizes = {f["type"]: f["bytes"] for f in files}
    assert sizes["q4_0"] < sizes["q4_k_m"] < sizes["q8_0"] < sizes["f16"] == sizes["bf16"], sizes
    assert abs(ppl["q8_0"] / ppl["f16"] - 1) < 0.01 and abs(ppl["bf16"] / ppl["f16"] - 1) < 0.02, ppl
    assert abs(ppl["q4_k_m"] / ppl["f16"] - 1) < 0.25 and abs(ppl["q4_0"] / ppl["f16"] - 1) < 0.35, ppl
    engines = {f["type"]: f["engine"] for f in files}
    assert engines == {"f16": "gguf", "q8_0": "gguf", "bf16": "gguf", "q4_k_m": "llama.cpp", "q4_0": "llama.cpp"}
    assert not list((tmp_path / "out").glob(".*")), "the quantizer's F16 scratch file and temp names are gone"


def test_q8_0_is_bit_exact_with_llama_cpps_own(llama_cpp, tmp_path):
    """Q8_0 written in Python (gguf) against llama.cpp's quantizer fed the F32 file: every Q8_0 tensor, byte for byte."""
    import gguf

    from factory.publish.gguf_export import export
    from factory.publish.gguf_quantize import quantize

    model_dir = write_tiny(tmp_path / "m")
    ours, f32 = export(model_dir, tmp_path / "out", ["q8_0", "f32"], "tiny")
    theirs = quantize(Path(f32["path"]), tmp_path / "theirs.gguf", "q8_0", "MOSTLY_Q8_0")
    a = {t.name: t for t in gguf.GGUFReader(ours["path"]).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs["path"]).tensors}
    both = [n for n in a if a[n].tensor_type == b[n].tensor_type == gguf.GGMLQuantizationType.Q8_0]
    assert len(both) >= 14, both  # every attention and MLP matrix
    for name in both:
        assert a[name].data.tobytes() == b[name].data.tobytes(), name


def test_import_of_the_exported_file_gives_the_weights_back(tmp_path, home):
    import torch
    from transformers import AutoModelForCausalLM

    from factory.hub.gguf_import import import_to_hub
    from factory.hub.local import LocalHub
    from factory.publish.gguf_export import export

    model_dir = write_tiny(tmp_path / "m")
    files = export(model_dir, tmp_path / "out", ["f16", "q8_0"], "tiny")
    hub = LocalHub(home / "hub")
    original = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).state_dict()
    for f, bound in zip(files, (0.0, 0.02)):  # F16: the weights were F16 already; Q8_0: half a step of 1/127 of 2.5
        folder = hub.snapshot(import_to_hub(Path(f["path"]), f"me/back-{f['type']}", hub) and f"me/back-{f['type']}")[0]
        back = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).state_dict()
        worst = max((original[k] - back[k]).abs().max().item() for k in original)
        assert worst <= bound, (f["type"], worst)


def test_refusals_name_the_problem(tmp_path, tiny_base):
    from factory.base.errors import UserError
    from factory.publish.gguf_export import check_folder, check_model
    from factory.request.config import parse_request as validate_request

    with pytest.raises(UserError, match="GPT2LMHeadModel, which the factory cannot export"):
        check_model({"architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(UserError, match="yarn rope scaling"):
        check_model({"architectures": ["LlamaForCausalLM"], "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    base = {"base_model": str(tiny_base), "datasets": [{"path": "x.jsonl", "type": "alpaca"}]}
    with pytest.raises(UserError, match="did you mean 'q4_k_m'"):
        validate_request({**base, "export": {"gguf": ["q4km"]}})
    with pytest.raises(UserError, match="publish.adapter"):
        validate_request({**base, "adapter": "lora", "lora_target_linear": True, "publish": {"adapter": True},
                          "export": {"gguf": ["q8_0"]}})
    assert validate_request({**base, "export": {"gguf": "Q8_0"}}).export.gguf == ["q8_0"]
    # a tokenizer whose pre-tokenizer llama.cpp does not implement by name: refused before any weight is read
    model_dir = write_tiny(tmp_path / "m")
    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    (model_dir / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UserError, match="pre-tokenizer is not one llama.cpp implements"):
        check_folder(model_dir, ["q8_0"])


def test_lint_refuses_an_architecture_at_validation(tmp_path):
    from factory.admission.lint import Facts, lint
    from factory.request.config import parse_request as validate_request

    req = validate_request({"base_model": "org/some-gpt2", "datasets": [{"path": "x.jsonl", "type": "alpaca"}],
                            "export": {"gguf": ["q8_0"]}})
    found = {f.rule: f for f in lint(req, Facts(config={"architectures": ["GPT2LMHeadModel"]}))}
    assert found["gguf-architecture"].severity == "error" and "GPT2LMHeadModel" in found["gguf-architecture"].message
    assert "gguf-architecture" not in {f.rule for f in lint(req, Facts(config={"architectures": ["Qwen2ForCausalLM"]}))}


def test_an_interrupted_export_leaves_no_file(tmp_path, monkeypatch):
    import gguf

    from factory.publish.gguf_export import export

    model_dir = write_tiny(tmp_path / "m")
    out = tmp_path / "out"

    def boom(self, progress=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensors_to_file", boom)
    with pytest.raises(KeyboardInterrupt):
        export(model_dir, out, ["q8_0"], "tiny")
    assert list(out.iterdir()) == []  # neither the file nor its temporary name


@pytest.mark.parametrize("which", ["phi-3-mini", "phi-2"])
def test_shared_tokenizers_split_text_as_transformers_does(which, shared, llama_cpp, tmp_path):
    """A real SentencePiece-style vocabulary (Phi-3, as Llama 2 and Mistral) and a GPT-2 one, in a tiny Mistral."""
    from transformers import AutoTokenizer

    from factory.publish.gguf_export import export

    tok = AutoTokenizer.from_pretrained(shared / "tokenizers" / which)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model_dir = write_tiny(tmp_path / which, "mistral", tokenizer=tok)
    files = export(model_dir, tmp_path / "out", ["f16"], which)
    assert files[0]["tokenizer"] == {"phi-3-mini": "llama", "phi-2": "gpt2"}[which]
    llm = llama_cpp.load(Path(files[0]["path"]), n_ctx=256)
    rows = [json.loads(x) for x in (shared / "sft_alpaca" / "alpaca_libre_tasks_v3.jsonl").read_text().splitlines()[:40]]
    texts = [r.get("instruction", "") + "\n" + r.get("output", "") for r in rows] + TEXTS[1:]
    same = [llama_cpp.tokenize(llm, t) == tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert all(same), [t for t, ok in zip(texts, same) if not ok][:3]


def test_a_request_exports_publishes_the_gguf_repo_and_its_card(home, tiny_base, tmp_path, capsys):
    from factory.cli.main import main
    from factory.hub.local import LocalHub

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"number {i}"}) + "\n" for i in range(40)))
    req = tmp_path / "r.yaml"
    req.write_text(yaml.safe_dump({
        "base_model": str(tiny_base), "datasets": [{"path": str(data), "type": "alpaca"}], "sequence_len": 64,
        "max_steps": 2, "adapter": "lora", "lora_target_linear": True, "lora_r": 4, "val_set_size": 0.2,
        "hub_model_id": "me/tiny-gguf", "export": {"gguf": ["q8_0", "f16"]}}))
    assert main(["run", str(req)]) == 0
    run = next((home / "runs").iterdir())
    hub = LocalHub(home / "hub")
    folder, rev = hub.snapshot("me/tiny-gguf-GGUF")
    assert sorted(p.name for p in folder.glob("*.gguf")) == ["tiny-gguf-F16.gguf", "tiny-gguf-Q8_0.gguf"]
    card = (folder / "README.md").read_text()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["base_model"] == "me/tiny-gguf" and meta["base_model_relation"] == "quantized" and "gguf" in meta["tags"]
    assert "ollama run hf.co/me/tiny-gguf-GGUF:Q8_0" in card and "llama-cli -hf me/tiny-gguf-GGUF:Q8_0" in card
    exported = json.loads((run / "export.json").read_text())
    assert exported["measured"]["which"] == "held-out" and exported["measured"]["texts"] == 8
    for f in exported["files"]:
        assert f["perplexity"] > 1 and f"{f['perplexity']:.3f}" in card
    modelfile = (folder / "Modelfile").read_text()
    assert "FROM ./tiny-gguf-Q8_0.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert 'eq .Role "user" }}<|im_start|>user\n{{ .Content }}<|im_end|>\n' in modelfile
    model_card = hub.snapshot("me/tiny-gguf")[0].joinpath("README.md").read_text()
    assert "me/tiny-gguf-GGUF" in model_card and "Q8_0 (" in model_card
    published = json.loads((run / "published.json").read_text())
    assert published["gguf"]["repo_id"] == "me/tiny-gguf-GGUF" and published["gguf"]["revision"] == rev
    assert str(home) not in card and str(home) not in modelfile
    # the same request again: nothing is exported or published anew
    assert main(["run", str(req)]) == 0
    assert hub.snapshot("me/tiny-gguf-GGUF")[1] == rev


def test_factory_export_command(home, tiny_base, tmp_path, capsys, llama_cpp):
    from factory.cli.main import main

    text = tmp_path / "held.txt"
    text.write_text("\n\n".join(TEXTS))
    assert main(["export", str(tiny_base), "--gguf", "q8_0", "--gguf", "q4_k_m", "--name", "tiny", "--out",
                 str(tmp_path / "o"), "--text", str(text)]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "o" / "tiny-GGUF"
    assert (folder / "tiny-Q8_0.gguf").is_file() and (folder / "tiny-Q4_K_M.gguf").is_file()
    assert "tokens/s in llama.cpp" in out and "perplexity" in out and "the source model in transformers" in out
    assert main(["export", str(tiny_base), "--gguf", "q9"]) == 2
    assert "not one the factory can write" in capsys.readouterr().err
