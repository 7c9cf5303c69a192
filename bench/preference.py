"""The factory's DPO training against TRL's DPOTrainer: same model, same pairs, same settings, one run each.

    python bench/preference.py [--model DIR] [--pairs 96] [--steps 12] [--micro-batch 4]

Each side runs in its own process (so peak memory is its own): the factory's train_preference (pairs packed into
one row per micro-batch, reference log-probs computed once before training, logits only at answer positions)
and TRL 1.x's DPOTrainer (padded batches, the reference forward at every step). Both train LoRA (r 16, all linear
layers) with the sigmoid loss, beta 0.1, the same learning rate, steps and micro-batch, on the first HH-RLHF
harmless pairs from ../shared/data rendered with the model's chat template. Printed: the machine, training wall
time (the reference computation included on both sides), real tokens/s (prompt + answer of both sequences of
every pair trained, padding excluded) and peak memory (CUDA max allocated on a GPU, else the process's max RSS).
The model is SmolLM2-135M-Instruct from the local hub when `make real-model` has run, else the demo's tiny model.
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
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "preference" / "hh_rlhf_harmless_base_test.jsonl.gz"




def pairs(model: Path, n: int, sequence_len: int):
    """The first n usable HH-RLHF pairs (prompt turns, chosen, rejected) that fit sequence_len, and their tokens."""
    from transformers import AutoTokenizer

    from factory.data.chat import in_process
    from factory.data.pair_data import fit, load_pairs, tokenise
    from factory.request.config import parse_request

    request = parse_request({"base_model": str(model), "rl": "dpo", "sequence_len": sequence_len,
                             "datasets": [{"path": str(HH), "type": "preference"}]})
    found, _ = load_pairs(request, [([HH], None)])
    tok = AutoTokenizer.from_pretrained(model)
    render = in_process(tok, tok.chat_template)
    out = []
    for p in found:
        t = fit(tokenise(p, tok, render), request)
        if t is not None and p.raw_prompt is None:
            out.append((p, t))
        if len(out) == n:
            break
    return out


def side(name: str, model: Path, n: int, steps: int, micro: int, sequence_len: int) -> dict:
    import torch

    from factory.base.progress import Silent
    from factory.request.config import parse_request

    data = pairs(model, n, sequence_len)
    settings = {"learning_rate": 5e-5, "lora_r": 16, "lora_alpha": 32}
    cuda = torch.cuda.is_available()
    out = Path(tempfile.mkdtemp())
    if name == "factory":
        from transformers import AutoTokenizer

        from factory.train.preference import train_preference

        request = parse_request({"base_model": str(model), "rl": "dpo", "adapter": "lora", "lora_target_linear": True,
                                 "datasets": [{"path": "x.jsonl", "type": "preference"}], "micro_batch_size": micro,
                                 "max_steps": steps, "sequence_len": sequence_len, "logging_steps": 1000,
                                 "save_steps": 10_000, "bf16": cuda, **settings})
        tok = AutoTokenizer.from_pretrained(model)
        t0 = time.time()
        result = train_preference(request, model, tok, [t for _, t in data], out, Silent())
        seconds = time.time() - t0
        tokens = result.tokens_seen  # the Trainer's count of the packed rows' tokens: no padding in them
    else:
        from datasets import Dataset
        from peft import LoraConfig
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        tok = AutoTokenizer.from_pretrained(model)
        rows = [{"prompt": [{"role": r, "content": c} for r, c in p.prompt],
                 "chosen": [{"role": "assistant", "content": p.chosen}],
                 "rejected": [{"role": "assistant", "content": p.rejected}]} for p, _ in data]
        cfg = DPOConfig(output_dir=str(out), per_device_train_batch_size=micro, max_steps=steps, beta=0.1,
                        learning_rate=settings["learning_rate"], logging_steps=1000, save_strategy="no", report_to=[],
                        use_cpu=not cuda, bf16=cuda, max_length=sequence_len, lr_scheduler_type="cosine",
                        dataloader_num_workers=0)
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32), args=cfg,
                             train_dataset=Dataset.from_list(rows), processing_class=tok,
                             peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                    task_type="CAUSAL_LM"))
        t0 = time.time()
        trainer.train()
        seconds = time.time() - t0
        tokens = trainer._total_train_tokens  # TRL's own count: the attention mask's ones, padding excluded
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"side": name, "seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds, "peak_mib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a model folder (default: SmolLM2-135M-Instruct if imported, else tiny)")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--sequence-len", type=int, default=512)
    ap.add_argument("--side", choices=["factory", "trl"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    from factory.demo.real_model import real_or_tiny

    model = args.model or real_or_tiny()
    if args.side:
        print(json.dumps(side(args.side, model, args.pairs, args.steps, args.micro_batch, args.sequence_len)))
        return
    import torch

    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU {platform.machine()}, {os.cpu_count()} cores"
    print(f"machine: {where}; torch {torch.__version__}; model {model}")
    print(f"DPO, LoRA r16 all-linear, beta 0.1, {args.steps} steps of {args.micro_batch} pairs, "
          f"{args.pairs} HH-RLHF harmless pairs, sequence_len {args.sequence_len}")
    results = []
    for name in ("trl", "factory"):
        cmd = [sys.executable, __file__, "--side", name, "--model", str(model), "--pairs", str(args.pairs),
               "--steps", str(args.steps), "--micro-batch", str(args.micro_batch), "--sequence-len", str(args.sequence_len)]
        run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if run.returncode:
            sys.exit(f"{name} failed:\n{run.stderr[-3000:]}")
        results.append(json.loads(run.stdout.strip().splitlines()[-1]))
    print(f"{'side':8} {'train s':>8} {'tokens':>8} {'tokens/s':>9} {'peak MiB':>9}")
    for r in results:
        print(f"{r['side']:8} {r['seconds']:8.1f} {r['tokens']:8.0f} {r['tokens_per_s']:9.0f} {r['peak_mib']:9.0f}")
    trl, ours = results
    print(f"factory / TRL: {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x tokens/s, "
          f"{ours['peak_mib'] / trl['peak_mib']:.2f}x peak memory")


if __name__ == "__main__":
    main()
