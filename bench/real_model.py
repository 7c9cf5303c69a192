"""LoRA training speed and memory on the real SmolLM2-135M-Instruct, and where a step's time goes.

    .venv/bin/python bench/real_model.py [--samples 96] [--seq-len 1024]   (needs the [bench] extra: trl)

The base is the real model in the local hub (`make real-model` first, or this imports it). The data
are the first N rows of the shared Alpaca file alpaca_libre_tasks_v1.jsonl, rendered with the
model's own ChatML template; the loss is on the answers only (prompts masked) in every row. One
epoch each, LoRA r=16 on every linear layer, fp32, no gradient checkpointing, each in its own process
so its peak memory (max RSS, model load included) is its own:

- factory packed: the factory's path (best-fit packing, logits only at trained positions);
- factory packed, full logits: the same with the model's own loss (every position through the LM head),
  the path before factory/train/loss.py;
- Trainer padded: the same Trainer on rows padded to the longest in a batch of 4;
- TRL SFTTrainer: packing=bfd (padding-free), completion-only loss on prompt/completion rows, the
  same LoRA and settings.

Then one packed step of 1 x seq-len tokens is profiled with module hooks: attention, MLP, LM head,
loss, the rest of the backward, optimizer; for both losses.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACTORY_SHARED_DATA", ROOT.parent / "shared" / "data"))
ALPACA = SHARED / "sft_alpaca" / "alpaca_libre_tasks_v1.jsonl"
LORA = {"adapter": "lora", "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "lora_target_linear": True}


def model_dir() -> Path:
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub
    from factory.demo.real_model import REPO_ID, ensure

    hub = LocalHub(hub_root())
    if not hub.exists(REPO_ID):
        ensure(hub)
    return hub.snapshot(REPO_ID)[0]


def rows(n: int) -> list[dict]:
    out = []
    for line in ALPACA.read_text().splitlines():
        r = json.loads(line)
        prompt = f"{r['instruction']}\n\n{r['input']}".strip() if r.get("input") else r["instruction"]
        if prompt.strip() and r.get("output", "").strip():
            out.append({"prompt": prompt, "output": r["output"]})
        if len(out) == n:
            break
    return out


def encoded(folder: Path, n: int, seq_len: int):
    from transformers import AutoTokenizer

    from factory.data.encode import encode_all
    from factory.data.formats import Sample

    tok = AutoTokenizer.from_pretrained(folder)
    samples = [Sample(messages=(("user", r["prompt"]), ("assistant", r["output"]))) for r in rows(n)]
    arrays, _ = encode_all(samples, tok, tok.chat_template, False, processes=1)
    return tok, [e for e in arrays.to_list() if len(e.input_ids) <= seq_len]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_factory(n: int, seq_len: int, packing: bool, full_logits: bool) -> dict:
    from factory.request.config import parse_request
    from factory.base.progress import Silent
    from factory.train.train import train

    folder = model_dir()
    tok, data = encoded(folder, n, seq_len)
    if full_logits:  # the path before factory/train/loss.py: the model's own loss over every position
        import factory.train.loss
        import factory.train.packing

        factory.train.loss.kept_logits_loss = None
        plain = factory.train.packing.FlattenCollator.__call__
        factory.train.packing.FlattenCollator.__call__ = lambda self, b: {k: v for k, v in plain(self, b).items()
                                                                     if k != "logits_to_keep"}
    req = parse_request({"base_model": str(folder), "datasets": [{"path": "o/d"}], "sequence_len": seq_len,
                         "sample_packing": packing, "micro_batch_size": 1 if packing else 4, "num_epochs": 1,
                         "learning_rate": 1e-4, "bf16": False, "save_steps": 100000, "logging_steps": 1000, **LORA})
    work = Path(tempfile.mkdtemp(prefix="real-bench-"))
    result = train(req, folder, tok, data, [], work, Silent())
    return {"seconds": result.seconds, "steps": result.steps, "tokens": sum(len(e.input_ids) for e in data),
            "trained": sum(sum(1 for x in e.labels[1:] if x != -100) for e in data), "loss": result.train_loss}


def run_trl(n: int, seq_len: int) -> dict:
    import datasets
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    folder = model_dir()
    tok, data = encoded(folder, n, seq_len)
    keep = len(data)  # the same rows the factory trains on (those that fit seq_len)
    ds = datasets.Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}],
                                      "completion": [{"role": "assistant", "content": r["output"]}]}
                                     for r in rows(n)][:keep])
    work = Path(tempfile.mkdtemp(prefix="real-bench-trl-"))
    args = SFTConfig(output_dir=str(work), packing=True, packing_strategy="bfd", max_length=seq_len,
                     per_device_train_batch_size=1, num_train_epochs=1, learning_rate=1e-4, report_to=[],
                     logging_steps=1000, disable_tqdm=True, use_cpu=True, seed=42, bf16=False,
                     gradient_checkpointing=False, save_strategy="no", completion_only_loss=True)
    peft = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(folder, dtype="float32"), args=args,
                         processing_class=tok, train_dataset=ds, peft_config=peft)
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    t = time.time()
    out = trainer.train()
    return {"seconds": time.time() - t, "steps": out.global_step, "tokens": tokens, "loss": out.training_loss}


def profile(seq_len: int, n: int, args_rounds: int = 3) -> dict:
    """One packed step, timed per part with forward/backward hooks, for both losses: the median of 3 alternating
    rounds after a warm-up round."""
    import torch

    from factory.request.config import parse_request
    from factory.train.loss import kept_logits_loss
    from factory.train.packing import FlattenCollator, pack
    from factory.train.train import load_base, wrap_adapter

    folder = model_dir()
    _, data = encoded(folder, n, seq_len)
    bins = pack(data, seq_len, 0).bins
    batch = FlattenCollator()([[data[i] for i in bins[0]]])
    req = parse_request({"base_model": str(folder), "datasets": [{"path": "o/d"}], "bf16": False, **LORA})
    model = wrap_adapter(req, load_base(req, folder))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    parts = {"attention": "self_attn", "MLP": "mlp", "LM head": "lm_head"}
    clock: dict[str, float] = {}
    starts: dict[int, float] = {}

    def hooks(module, name):
        def pre(m, *a):
            starts[id(m)] = time.perf_counter()

        def post(m, *a):
            clock[name] = clock.get(name, 0.0) + time.perf_counter() - starts.pop(id(m))
        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
        module.register_full_backward_pre_hook(lambda m, g: pre(m))
        module.register_full_backward_hook(lambda m, gi, go: post(m))

    for mod_name, module in model.named_modules():
        leaf = mod_name.rsplit(".", 1)[-1]
        for label, suffix in parts.items():
            if leaf == suffix and not any(x in mod_name for x in ("lora_", "base_layer")):
                hooks(module, label)
    import statistics

    runs: dict[str, list[dict]] = {"full logits": [], "kept logits": []}
    for round_ in range(args_rounds + 1):  # round 0 warms both up; then alternate, so drift hits both alike
        for variant in runs:
            clock.clear()
            t0 = time.perf_counter()
            if variant == "kept logits":
                o = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                          logits_to_keep=batch["logits_to_keep"])
                tl = time.perf_counter()
                loss = kept_logits_loss(o, batch["labels"])
            else:
                o = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"])
                tl = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(o.logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100)
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            opt.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            if round_:
                parts_s = dict(clock)
                runs[variant].append({**parts_s, "loss": t1 - tl, "other (norms, embeddings, LoRA glue, autograd)":
                                      (t2 - t0) - sum(parts_s.values()) - (t1 - tl), "optimizer": t3 - t2, "step": t3 - t0})
    out = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    out["tokens"] = len(batch["input_ids"][0])
    out["trained"] = int(len(batch["logits_to_keep"]))
    return out


def child(args) -> None:
    fn = {"factory-packed": lambda: run_factory(args.samples, args.seq_len, True, False),
          "factory-packed-full": lambda: run_factory(args.samples, args.seq_len, True, True),
          "padded": lambda: run_factory(args.samples, args.seq_len, False, False),
          "trl": lambda: run_trl(args.samples, args.seq_len),
          "profile": lambda: profile(args.seq_len, args.samples)}[args.child]
    result = fn()
    result["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(result))


def measure(what: str, args) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, __file__, "--child", what, "--samples", str(args.samples),
                        "--seq-len", str(args.seq_len)], capture_output=True, text=True, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{what} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=96)
    ap.add_argument("--seq-len", type=int, default=1024)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--skip", action="append", default=[], help="leave a row out (factory-packed-full, padded, trl)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child:
        from transformers.utils import logging

        logging.set_verbosity_error()
        logging.disable_progress_bar()
        return child(args)
    import torch

    print(f"machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; model: SmolLM2-135M-Instruct (dequantised Q4_1, fp32), LoRA r=16 all-linear")
    model_dir()  # import once, outside the timed children
    names = {"factory-packed": "factory packed (kept logits)", "factory-packed-full": "factory packed, full logits (before)",
             "padded": "Trainer padded (batch 4)", "trl": "TRL SFTTrainer packing=bfd"}
    results = {}
    for key, name in names.items():
        if key in args.skip:
            continue
        r = measure(key, args)
        results[key] = r
        tps = r["tokens"] / r["seconds"]
        print(f"{name:38} {r['steps']:>4} steps {r['seconds']:>7.1f}s {tps:>8,.0f} real tok/s  peak {r['peak_mb']:>6,.0f} MB"
              f"  loss {r['loss']:.4f}", flush=True)
    base = results.get("factory-packed")
    if base:
        for key in ("factory-packed-full", "padded", "trl"):
            if key in results:
                other = results[key]
                print(f"factory packed vs {names[key]}: {(base['tokens'] / base['seconds']) / (other['tokens'] / other['seconds']):.2f}x tokens/s")
    prof = measure("profile", args)
    print(f"\none packed step of {prof['tokens']} tokens ({prof['trained']} trained), seconds per part "
          "(forward + backward; module hooks; median of 3 alternating rounds after a warm-up):")
    keys = [k for k in prof["full logits"] if k != "step"]
    print(f"{'part':48} {'full logits':>12} {'kept logits':>12}")
    for k in keys + ["step"]:
        print(f"{k:48} {prof['full logits'].get(k, 0):>12.3f} {prof['kept logits'].get(k, 0):>12.3f}")
    print("timed: trainer.train() alone (model load and tokenising outside); tokens/s counts real (non-pad) tokens.")


if __name__ == "__main__":
    main()
