"""Data preparation speed: the factory's data stage vs the plain batch tokenizer (the floor) vs TRL.

    .venv/bin/python bench/data_prep.py [--sizes 10000,100000,1000000] [--trl-sizes 10000,100000] [--repeat N]

Rows: the shared Alpaca files (alpaca_libre v1 and v3, LLaMA-Factory's demo; 4,579 rows) and the
500 ShareGPT conversations of fastchat_dummy_conversation.json, repeated up to the size, each copy's
first user turn suffixed " (variant K)" so that no two rows are equal (de-duplication keeps them
all). Written to a JSONL file first; every figure is from that file to tokenised, masked samples.

- factory: what the data stage does on a cache miss: `encode_datasets` (the parent reads the rows
  into chunks; N worker processes parse, normalise, hash, render once per conversation and tokenise
  in batches, at most two chunks in flight per process; the parent de-duplicates in load order) into
  a new cache entry on disk (`CacheWriter`), with the real Phi-3-mini fast tokenizer (32k vocab;
  ChatML's markers added as special tokens) and the ChatML template.
- floor: the same rows parsed with orjson (as the factory does), rendered to ChatML by string
  concatenation and tokenised by the same fast tokenizer in batches of 1,000, one process, no masks:
  what one core of the tokenizer can do.
- TRL: `SFTTrainer`'s dataset preparation with assistant_only_loss (a ChatML template with
  {% generation %} tags, as TRL requires), from the same JSONL through `datasets`, with
  dataset_num_proc = the same N.
Each configuration runs in a fresh process; peak memory is its maximum RSS plus its children's.
The multi-turn table times one conversation of 2, 8 and 32 turns, the factory's way and the prefix
method (the reference it replaced), per turn.
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
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TAGGED_CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}"
    "{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] + '<|im_end|>\n' }}{% endgeneration %}"
    "{% else %}{{ m['content'] + '<|im_end|>\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def base_rows(kind: str) -> list[dict]:
    if kind == "alpaca":
        rows = []
        for name in ("alpaca_libre_tasks_v1.jsonl", "alpaca_libre_tasks_v3.jsonl"):
            rows += [json.loads(x) for x in (SHARED / "sft_alpaca" / name).read_text().splitlines() if x.strip()]
        rows += json.loads((SHARED / "sft_alpaca" / "llamafactory_alpaca_en_demo.json").read_text())
        rows = [{k: r.get(k, "") for k in ("instruction", "input", "output")} for r in rows]
        return [r for r in rows if r["instruction"].strip() and r["output"].strip()]
    convs = json.loads((SHARED / "chat_sharegpt" / "fastchat_dummy_conversation.json").read_text())
    return [{"messages": [{"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
                          for t in c["conversations"]]} for c in convs]


def write_rows(kind: str, n: int, path: Path) -> None:
    base = base_rows(kind)
    with path.open("w") as f:
        for i in range(n):
            r = json.loads(json.dumps(base[i % len(base)]))
            k = i // len(base)
            if k:
                if kind == "alpaca":
                    r["instruction"] += f" (variant {k})"
                else:
                    r["messages"][0]["content"] += f" (variant {k})"
            f.write(json.dumps(r) + "\n")


def load_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SHARED / "tokenizers" / "phi-3-mini")
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    return tok


def peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + kids) / 1024


def run_factory(path: Path, kind: str, processes: int) -> dict:
    from factory.data.chat import BUILTIN_TEMPLATES
    from factory.request.config import parse_request
    from factory.data.encode import encode_datasets
    from factory.data.encoded_store import CacheWriter

    tok = load_tokenizer()
    req = parse_request({"base_model": "org/base", "datasets": [{"path": str(path), "type": "alpaca" if kind == "alpaca"
                                                                  else "messages"}], "dataset_processes": processes})
    reports: list = []
    writer = CacheWriter(Path(tempfile.mkdtemp(prefix="factory-prep-")) / "entry")
    t = time.perf_counter()
    stats = encode_datasets(req, None, reports, tok, BUILTIN_TEMPLATES["chatml"], writer.add)
    encoded = writer.done({"template": "chatml", "reports": [r.as_dict() for r in reports]})
    seconds = time.perf_counter() - t
    return {"rows": len(encoded), "seconds": seconds, "prefix_rows": stats["prefix_rows"],
            "tokens": int(encoded.offsets[-1])}


def run_floor(path: Path, kind: str) -> dict:
    import orjson

    tok = load_tokenizer()
    t = time.perf_counter()
    texts = []
    tokens = 0
    with path.open() as f:
        for line in f:
            r = orjson.loads(line)  # the fastest parse, as the factory's: the floor is no slower than it need be
            msgs = ([{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}".strip()},
                     {"role": "assistant", "content": r["output"]}] if kind == "alpaca" else r["messages"])
            texts.append("".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in msgs))
            if len(texts) == 1000:
                tokens += sum(map(len, tok(texts, add_special_tokens=False)["input_ids"]))
                texts = []
    if texts:
        tokens += sum(map(len, tok(texts, add_special_tokens=False)["input_ids"]))
    return {"seconds": time.perf_counter() - t, "tokens": tokens}


def run_trl(path: Path, kind: str, processes: int) -> dict:
    import datasets
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from trl import SFTConfig, SFTTrainer

    datasets.disable_progress_bars()
    tok = load_tokenizer()
    tok.chat_template = TAGGED_CHATML
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    out = Path(tempfile.mkdtemp(prefix="trl-prep-"))
    t = time.perf_counter()
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(out / "cache"))
    if kind == "alpaca":
        ds = ds.map(lambda r: {"messages": [{"role": "user", "content": f"{r['instruction']}\n\n{r['input']}".strip()},
                                            {"role": "assistant", "content": r["output"]}]},
                    remove_columns=["instruction", "input", "output"], num_proc=processes if processes > 1 else None)
    args = SFTConfig(output_dir=str(out), assistant_only_loss=True, max_length=None, report_to=[], use_cpu=True,
                     dataset_num_proc=processes if processes > 1 else None, bf16=False)
    trainer = SFTTrainer(model=model, args=args, processing_class=tok, train_dataset=ds)
    seconds = time.perf_counter() - t
    return {"seconds": seconds, "rows": len(trainer.train_dataset)}


def child(args) -> None:
    path = Path(args.child_path)
    fn = {"factory": lambda: run_factory(path, args.kind, args.processes), "floor": lambda: run_floor(path, args.kind),
          "trl": lambda: run_trl(path, args.kind, args.processes)}[args.child]
    result = fn()
    result["peak_mb"] = peak_mb()
    print("RESULT " + json.dumps(result))


def measure(what: str, kind: str, path: Path, processes: int, repeat: int = 1) -> dict:
    """The run with the median time of `repeat` fresh-process runs (a 10k-row run lasts under a second:
    one run is mostly this machine's noise)."""
    runs = sorted((measure_once(what, kind, path, processes) for _ in range(repeat)), key=lambda r: r["seconds"])
    return runs[len(runs) // 2]


def measure_once(what: str, kind: str, path: Path, processes: int) -> dict:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, __file__, "--child", what, "--kind", kind, "--child-path", str(path),
                        "--processes", str(processes)], capture_output=True, text=True, env=env)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{what} {kind} failed:\n{p.stderr[-3000:]}")
    return json.loads(line[7:])


def turns_table() -> None:
    from factory.data.chat import BUILTIN_TEMPLATES, encode
    from factory.data.encode import encode_all
    from factory.data.formats import Sample

    tok = load_tokenizer()
    template = BUILTIN_TEMPLATES["chatml"]
    words = "the river sings of rain and music in the city at night".split()
    print(f"\n{'turns':>5} {'factory us/turn':>16} {'prefix method us/turn':>22}   (one conversation, 200 copies)")
    for turns in (2, 8, 32):
        conv = tuple(("user" if i % 2 == 0 else "assistant", " ".join(words[(i + j) % len(words)] for j in range(40)))
                     for i in range(turns))
        samples = [Sample(messages=conv)] * 200
        t = time.perf_counter()
        encode_all(samples, tok, template, False, processes=1)
        fast = (time.perf_counter() - t) / (200 * turns) * 1e6
        t = time.perf_counter()
        for s in samples:
            encode(s, tok, template, False)
        slow = (time.perf_counter() - t) / (200 * turns) * 1e6
        print(f"{turns:>5} {fast:>16.0f} {slow:>22.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--trl-sizes", default="10000,100000", help="TRL is slower: the sizes it runs at")
    ap.add_argument("--processes", default="1,2")
    ap.add_argument("--kinds", default="alpaca,sharegpt")
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration; the median is shown")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--child-path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.processes = int(args.processes)
        child(args)
        return
    import transformers

    procs = [int(x) for x in args.processes.split(",")]
    trl_sizes = {int(x) for x in args.trl_sizes.split(",") if x}
    print(f"machine: {platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()},"
          f" transformers {transformers.__version__}; tokenizer: Phi-3-mini (fast), ChatML")
    print(f"{'kind':8} {'rows':>9} {'what':22} {'seconds':>8} {'rows/s':>8} {'per proc':>9} {'vs floor':>8} {'peak MB':>8}")
    work = Path(tempfile.mkdtemp(prefix="data-prep-"))
    for kind in args.kinds.split(","):
        for n in (int(x) for x in args.sizes.split(",")):
            path = work / f"{kind}-{n}.jsonl"
            write_rows(kind, n, path)
            floor = measure("floor", kind, path, 1, args.repeat)
            floor_rate = n / floor["seconds"]
            print(f"{kind:8} {n:>9,} {'floor (tokenizer only)':22} {floor['seconds']:>8.1f} {floor_rate:>8,.0f} "
                  f"{floor_rate:>9,.0f} {'1.00x':>8} {floor['peak_mb']:>8,.0f}", flush=True)
            for p in procs:
                r = measure("factory", kind, path, p, args.repeat)
                rate = r["rows"] / r["seconds"]
                print(f"{kind:8} {n:>9,} {f'factory, {p} proc':22} {r['seconds']:>8.1f} {rate:>8,.0f} {rate / p:>9,.0f} "
                      f"{floor_rate / (rate / p):>7.2f}x {r['peak_mb']:>8,.0f}"
                      + (f"  ({r['prefix_rows']} rows by prefix)" if r["prefix_rows"] else ""), flush=True)
            for p in procs if n in trl_sizes else ():
                r = measure("trl", kind, path, p, args.repeat)
                rate = n / r["seconds"]
                print(f"{kind:8} {n:>9,} {f'TRL SFTTrainer, {p} proc':22} {r['seconds']:>8.1f} {rate:>8,.0f} "
                      f"{rate / p:>9,.0f} {floor_rate / (rate / p):>7.2f}x {r['peak_mb']:>8,.0f}", flush=True)
            path.unlink()
    print("\n'vs floor': the floor's rows/s over this row's rows/s per process (1.00x = tokenizer speed per core).")
    turns_table()


if __name__ == "__main__":
    main()
