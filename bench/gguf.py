"""GGUF export of a real model: each type's size, export time, perplexity and greedy tokens/s in llama.cpp,
against the merged (source) model in transformers on the same tokens, on this machine.

    python bench/gguf.py [--model DIR] [--types f16 q8_0 q4_k_m q5_k_m q4_0] [--texts 32] [--new-tokens 64]

The model is SmolLM2-135M-Instruct from the local hub when `make real-model` has run, else the demo's tiny
model. Perplexity: the first --texts C4 documents of ../shared/data (pretrain_text, at most 512 tokens
each), the same tokens for every file and for transformers. Tokens/s: greedy decoding of --new-tokens after a short
prompt, one token per step, the prompt's own evaluation not counted; transformers: `generate` with
the KV cache, float32, same prompt and token count. Threads: every core (llama.cpp) and torch's default.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
C4 = ROOT.parent / "shared" / "data" / "pretrain_text" / "llamafactory_c4_demo.jsonl"




def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from evals import gguf_runs
    from factory.publish.gguf_export import export
    from factory.demo.real_model import real_or_tiny

    hf_logging.disable_progress_bar()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path)
    ap.add_argument("--types", nargs="+", default=["f16", "q8_0", "q5_k_m", "q4_k_m", "q4_0"])
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=64)
    args = ap.parse_args()
    model_dir = args.model or real_or_tiny()
    import llama_cpp

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.processor() or 'cpu'}; Python "
          f"{platform.python_version()}, torch {torch.__version__}, llama-cpp-python {llama_cpp.__version__}")
    print(f"model: {model_dir if args.model else '/'.join(model_dir.parts[-5:-2])} (local hub)")
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [json.loads(x) for x in C4.read_text().splitlines()[: args.texts]]
    ids = [tok(r["text"])["input_ids"][:512] for r in rows]
    text = tok.apply_chat_template([{"role": "user", "content": "Write a short story about a lighthouse."}],
                                   add_generation_prompt=True, tokenize=False)
    prompt = tok(text, add_special_tokens=False)["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    ref = gguf_runs.transformers_perplexity(model, ids)
    with torch.no_grad():
        x = torch.tensor([prompt])
        model.generate(x, max_new_tokens=4, do_sample=False)  # warm-up
        t0 = time.perf_counter()
        model.generate(x, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
        hf_rate = args.new_tokens / (time.perf_counter() - t0)
    source_bytes = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    del model
    out = Path(tempfile.mkdtemp(prefix="bench-gguf-"))
    print(f"perplexity on {len(ids)} C4 documents ({ref['tokens']:,} tokens); tokens/s: greedy, {args.new_tokens} new "
          "tokens after a chat prompt")
    print(f"{'file':34} {'size':>9} {'export s':>9} {'perplexity':>11} {'vs F16':>8} {'tokens/s':>9}")
    print(f"{'merged model (transformers, fp32)':34} {source_bytes / 1e6:>7.1f}MB {'':>9} {ref['perplexity']:>11.4f} "
          f"{'':>8} {hf_rate:>9.1f}")
    f16_ppl = None
    for qtype in args.types:
        t0 = time.perf_counter()
        (f,) = export(model_dir, out, [qtype], "model")
        seconds = time.perf_counter() - t0
        llm = gguf_runs.load(Path(f["path"]), n_ctx=512, logits_all=True)
        ppl = gguf_runs.perplexity(llm, ids)["perplexity"]
        llm.close()
        llm = gguf_runs.load(Path(f["path"]), n_ctx=512)
        gguf_runs.generation_speed(llm, prompt, 4)  # warm-up
        rate = gguf_runs.generation_speed(llm, prompt, args.new_tokens)["tokens_per_s"]
        llm.close()
        f16_ppl = ppl if qtype == "f16" else f16_ppl
        rel = f"{(ppl / f16_ppl - 1):+.2%}" if f16_ppl and qtype != "f16" else ""
        print(f"{f['file']:34} {f['bytes'] / 1e6:>7.1f}MB {seconds:>9.1f} {ppl:>11.4f} {rel:>8} {rate:>9.1f}")
        Path(f["path"]).unlink()


if __name__ == "__main__":
    main()
