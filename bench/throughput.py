"""Training throughput on the CPU: padded batches vs the factory's packing vs TRL SFTTrainer(packing=True).

    .venv/bin/python bench/throughput.py [--samples 480] [--seq-len 1024]    (needs the [bench] extra: trl)

The same randomly initialised small Llama (vocab of the real GPT-NeoX-20B tokenizer), the same
real Alpaca samples (tokenised with that tokenizer, every token trained), one epoch each, so every
row trains on the same number of real target tokens. Real tokens/s counts non-padding tokens only.

TRL runs twice: with its SFTConfig defaults (gradient checkpointing and bf16 autocast on), and
matched to the factory's settings (fp32, no checkpointing, one checkpoint saved at the end as the
factory's train() does, the same logging interval). The verdict uses the matched row; the
differences that remain are printed with it. Target on this CPU: packing >= 2x padded, and not
slower than matched TRL.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py shares its name with the stdlib module: keep this folder off sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def samples(shared: Path, n: int, seq_len: int) -> list[list[int]]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(shared / "tokenizers/gpt-neox-20b/20B_tokenizer.json"))
    rows = [json.loads(x) for x in (shared / "sft_alpaca/alpaca_libre_tasks_v1.jsonl").read_text().splitlines() if x.strip()]
    texts = [f"{r.get('instruction', '')}\n{r.get('input', '')}\n{r.get('output', '')}" for r in rows]
    ids = [e.ids + [0] for e in tok.encode_batch(texts)]  # 0 = <|endoftext|>
    return [x for x in ids if len(x) <= seq_len][:n]


def write_model(path: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50304, hidden_size=128, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)


def run_factory(model_dir: Path, data: list[list[int]], seq_len: int, packing: bool, work: Path) -> tuple[float, int]:
    from transformers import PreTrainedTokenizerFast

    from factory.data.chat import Encoded
    from factory.request.config import parse_request
    from factory.base.progress import Silent
    from factory.train.train import train

    tok = PreTrainedTokenizerFast(tokenizer_file=str(ROOT.parent / "shared/data/tokenizers/gpt-neox-20b/20B_tokenizer.json"),
                                  pad_token="<|endoftext|>")
    req = parse_request({"base_model": str(model_dir), "datasets": [{"path": "o/d"}], "sequence_len": seq_len,
                         "sample_packing": packing, "micro_batch_size": 1 if packing else 8, "num_epochs": 1,
                         "learning_rate": 1e-4, "bf16": False, "save_steps": 100000, "logging_steps": 1000})
    encoded = [Encoded(x, list(x)) for x in data]
    result = train(req, model_dir, tok, encoded, [], work / f"factory-{packing}", Silent())
    return result.seconds, result.steps


def run_trl(model_dir: Path, data: list[list[int]], seq_len: int, work: Path, matched: bool) -> tuple[float, int]:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
    from trl import SFTConfig, SFTTrainer

    tok = PreTrainedTokenizerFast(tokenizer_file=str(ROOT.parent / "shared/data/tokenizers/gpt-neox-20b/20B_tokenizer.json"),
                                  pad_token="<|endoftext|>", eos_token="<|endoftext|>")
    same = dict(output_dir=str(work / f"trl-{matched}"), packing=True, packing_strategy="bfd", max_length=seq_len,
                per_device_train_batch_size=1, num_train_epochs=1, learning_rate=1e-4, report_to=[],
                logging_steps=1000, disable_tqdm=True, use_cpu=True, seed=42)
    if matched:  # the factory's settings: fp32, no activation checkpointing, a checkpoint saved at the end
        args = SFTConfig(**same, bf16=False, gradient_checkpointing=False, save_strategy="steps", save_steps=100000)
    else:  # TRL's own defaults (bf16 and gradient checkpointing on), no checkpoint
        args = SFTConfig(**same, save_strategy="no")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args, processing_class=tok,
                         train_dataset=Dataset.from_dict({"input_ids": data}))
    t = time.time()
    out = trainer.train()
    return time.time() - t, out.global_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--samples", type=int, default=480)
    ap.add_argument("--seq-len", type=int, default=1024)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    data = samples(args.shared, args.samples, args.seq_len)
    real = sum(map(len, data))
    work = Path(tempfile.mkdtemp(prefix="throughput-"))
    write_model(work / "model")
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data: {len(data)} Alpaca samples <= {args.seq_len} tokens, {real:,} real tokens (all trained); "
          f"model: Llama hidden 128, 2 layers, vocab 50304, random init; one epoch each\n")
    run_factory(work / "model", data[:16], args.seq_len, True, work / "warmup")  # one-time costs out of the timings
    results = {}
    rows = (("padded (pad to longest, batch 8)", lambda: run_factory(work / "model", data, args.seq_len, False, work)),
            ("factory packing (BFD)", lambda: run_factory(work / "model", data, args.seq_len, True, work)),
            ("TRL packing=bfd, its defaults", lambda: run_trl(work / "model", data, args.seq_len, work, False)),
            ("TRL packing=bfd, matched", lambda: run_trl(work / "model", data, args.seq_len, work, True)))
    for name, fn in rows:
        seconds, steps = fn()
        results[name] = real / seconds
        print(f"{name:34} {steps:>5} steps {seconds:>7.1f}s {real / seconds:>9,.0f} real tok/s", flush=True)
    padded, packed, trl_defaults, trl_matched = results.values()
    print(f"\npacking / padded: {packed / padded:.2f}x (target >= 2x); "
          f"packing / TRL matched: {packed / trl_matched:.2f}x (target >= 1x); "
          f"packing / TRL defaults: {packed / trl_defaults:.2f}x")
    print("timed: trainer.train() alone in every row (model loading and data preparation are outside the timings).")
    print("TRL defaults differ from the factory in: bf16 autocast on, gradient checkpointing on, no checkpoint saved.")
    print("matched TRL still differs in: it computes per-step entropy and token accuracy over the vocabulary for its "
          "logs; its data collator and BFD packer are its own (both pack padding-free, one row of position_ids "
          "restarting per sample; both pack before the timed section).")

if __name__ == "__main__":
    main()
