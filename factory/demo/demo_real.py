"""`factory demo --real` (`make demo-real`): LoRA on the real SmolLM2-135M-Instruct to call tools.

The skill: given tool schemas (as the system message) and a user's request, answer with the JSON call
of the right tool, in the glaive format the dataset uses. The data are the 300 glaive rows in
../shared/data; every other row whose first reply is a tool call is held out (never trained on) and
becomes the eval task `glaive_toolcall_heldout`: the model's first JSON "name" must be the tool the
row called. ARC-Easy and WinoGrande subsets check that general ability did not collapse.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from factory.base.errors import UserError
from factory.base.home import factory_home

REQUEST = Path(__file__).resolve().parents[2] / "examples" / "smollm2-135m-toolcall.yaml"
DATASET_ID = "factory/glaive-toolcall-train"
GLAIVE = "chat_sharegpt/llamafactory_glaive_toolcall_en_demo.json"
HELDOUT = "glaive_toolcall_heldout.jsonl"
WHAT_IT_SHOWS = """\
what this shows: a real pretrained model (SmolLM2-135M-Instruct, dequantised from its Q4_1 GGUF) learns
a skill it lacks, on two CPU cores: calling the right tool, as JSON, on conversations it never saw in
training. arc_easy and winogrande are scored on the same seeded items for both models; whatever
they show (small subsets: read the ± column) is what the finetune did to general ability."""


def shared_data(needed: str = GLAIVE) -> Path:
    """The file `needed` in ../shared/data beside the project, or in $FACTORY_SHARED_DATA."""
    default = Path(__file__).resolve().parents[3] / "shared" / "data"
    folder = Path(os.environ.get("FACTORY_SHARED_DATA", default))
    if not (folder / needed).is_file():
        raise UserError(f"the real demo needs {needed} from the shared data folder, not found under {folder}; "
                        "set FACTORY_SHARED_DATA to the folder that holds it")
    return folder / needed


def is_heldout_item(index: int, row: dict) -> bool:
    turns = row.get("conversations") or []
    first_call = len(turns) > 1 and turns[0].get("from") == "human" and turns[1].get("from") == "function_call"
    return first_call and index % 2 == 0


def split(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out eval items). An eval item's text fields other than `question` sit in
    `meta` (an object), so the contamination check compares the user's request, not the shared tool schemas."""
    train, heldout = [], []
    for i, row in enumerate(rows):
        if not is_heldout_item(i, row):
            train.append(row)
            continue
        call = json.loads(row["conversations"][1]["value"])
        heldout.append({"question": row["conversations"][0]["value"],
                        "meta": {"system": row.get("tools") or "", "answer": call["name"], "row": i}})
    return train, heldout


def ensure_assets(hub, say=print) -> None:
    """The real base in the local hub, the training rows as a local-hub dataset, the held-out file,
    and $FACTORY_BENCHMARKS_DIR pointing at the shared benchmarks when it is unset."""
    from factory.base import atomic
    from factory.demo.real_model import ensure

    ensure(hub, say)
    data = shared_data().parents[1]
    os.environ.setdefault("FACTORY_BENCHMARKS_DIR", str(data / "benchmarks"))
    rows = json.loads((data / GLAIVE).read_text())
    train, heldout = split(rows)
    if not hub.exists(DATASET_ID, "dataset"):
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "train.json").write_text(json.dumps(train))
            (Path(tmp) / "README.md").write_text(
                "---\nlicense: apache-2.0\n---\n# glaive tool calls (training side)\n\n"
                f"{len(train)} of the {len(rows)} rows of LLaMA-Factory's `glaive_toolcall_en_demo.json` (a sample of "
                "glaiveai/glaive-function-calling-v2, Apache-2.0); the other rows are held out for evaluation.\n")
            hub.publish(DATASET_ID, Path(tmp), "factory demo --real: glaive tool-call rows", repo_type="dataset")
        say(f"wrote {len(train)} training rows as dataset {DATASET_ID} into the local hub")
    atomic.write_text(factory_home() / "evals" / HELDOUT, "".join(json.dumps(r) + "\n" for r in heldout))


def gguf_answers(run_dir: Path, say=print) -> None:
    """The held-out tool calls answered by the exported Q8_0 file in llama.cpp and by the merged model in
    transformers: the same prompts, greedy, 48 new tokens, the same check (the first JSON "name")."""
    import re
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals import gguf_runs

    export = json.loads((run_dir / "export.json").read_text()) if (run_dir / "export.json").is_file() else None
    if not export or not gguf_runs.available():
        say("GGUF: not scored (no export in this run, or llama-cpp-python is not installed)")
        return
    gguf = next(f for f in export["files"] if f["type"] == "q8_0")
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "merged")
    items = [json.loads(x) for x in (factory_home() / "evals" / HELDOUT).read_text().splitlines() if x.strip()]
    prompts = [tokenizer.apply_chat_template([{"role": "system", "content": it["meta"]["system"]},
                                             {"role": "user", "content": it["question"]}],
                                            add_generation_prompt=True, tokenize=False) for it in items]
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    stop = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}

    def right(ids, item) -> bool:
        found = re.search(r'"name"\s*:\s*"([^"]+)"', tokenizer.decode(ids, skip_special_tokens=True))
        return bool(found) and found.group(1) == item["meta"]["answer"]

    llm = gguf_runs.load(Path(export["folder"]) / gguf["file"], n_ctx=2048)
    t0 = time.time()
    by_gguf = [right(gguf_runs.greedy(llm, p, 48, stop), it) for p, it in zip(prompts, items)]
    gguf_s = time.time() - t0
    llm.close()
    model = AutoModelForCausalLM.from_pretrained(run_dir / "merged", dtype=torch.float32)
    t0 = time.time()
    by_merged = []
    with torch.no_grad():
        for p, it in zip(prompts, items):
            out = model.generate(torch.tensor([p]), max_new_tokens=48, do_sample=False,
                                 eos_token_id=sorted(stop), pad_token_id=tokenizer.pad_token_id)
            by_merged.append(right(out[0, len(p):].tolist(), it))
    merged_s = time.time() - t0
    n = len(items)
    say(f"GGUF {gguf['file']} ({gguf['bytes'] / 1e6:.1f} MB) in llama.cpp: {sum(by_gguf)}/{n} held-out tool calls "
        f"right ({sum(by_gguf) / n:.1%}, {gguf_s:.0f} s); the merged model in transformers: {sum(by_merged)}/{n} "
        f"({sum(by_merged) / n:.1%}, {merged_s:.0f} s); same prompts, greedy, 48 new tokens")
