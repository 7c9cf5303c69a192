"""lm-eval tasks generated from the benchmark registry, so the built-in benchmarks run offline.

Each benchmark's items (whatever shape its file has: llm-foundry JSONL, the MMLU-STEM export, the
TruthfulQA CSV, or the Hub parquet) are written as one JSONL of a single shape next to a task YAML:
multiple choice ({question, choices, gold}, accuracy) for MMLU, ARC, TruthfulQA (MC1), WinoGrande
and HellaSwag; generation with exact match on the final number for GSM8K.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from evals.benchmarks import BUILTIN, BenchmarkError, load_records

GENERATION = {"gsm8k"}
MULTIPLE_CHOICE = set(BUILTIN) - GENERATION


def _gold(r: dict, choices: list[str]):
    for key in ("gold", "answer", "label"):
        v = r.get(key)
        if isinstance(v, int) or (isinstance(v, str) and v.strip().isdigit()):
            return int(v)
    key = r.get("answerKey")  # ARC on the Hub: labels A-D or 1-4
    labels = (r.get("choices") or {}).get("label") if isinstance(r.get("choices"), dict) else None
    if key is not None and labels:
        return labels.index(key)
    return None


def multiple_choice(name: str, r: dict) -> dict | None:
    """One item as {question, choices, gold}, or None when the record has no usable answer."""
    if "context_options" in r:  # WinoGrande, llm-foundry: the options differ in the context
        choices = [f"{c} {r['continuation']}".strip() for c in r["context_options"]]
        return {"question": "", "choices": choices, "gold": int(r["gold"])}
    if "option1" in r:  # WinoGrande on the Hub
        choices = [r["sentence"].replace("_", r["option1"]), r["sentence"].replace("_", r["option2"])]
        return {"question": "", "choices": choices, "gold": int(r["answer"]) - 1}
    if "Best Answer" in r:  # TruthfulQA CSV: MC1 with the best answer against the incorrect ones
        wrong = [a.strip() for a in r["Incorrect Answers"].split(";") if a.strip()]
        return {"question": r["Question"], "choices": [r["Best Answer"], *wrong], "gold": 0}
    if "mc1_targets" in r:
        targets = r["mc1_targets"]
        if isinstance(targets, dict) and "choices" in targets:  # the Hub's multiple_choice config
            return {"question": r["question"], "choices": targets["choices"], "gold": targets["labels"].index(1)}
        return {"question": r["question"], "choices": list(targets), "gold": list(targets.values()).index(1)}
    if "best_answer" in r:  # TruthfulQA on the Hub, generation config
        return {"question": r["question"], "choices": [r["best_answer"], *r["incorrect_answers"]], "gold": 0}
    question = r.get("query") or r.get("question") or r.get("ctx") or ""
    choices = r.get("choices") or r.get("endings")
    if isinstance(choices, dict):
        choices = choices.get("text")
    if not isinstance(choices, list) or not choices:
        return None
    gold = _gold(r, choices)
    if gold is None or not 0 <= gold < len(choices):
        return None
    return {"question": question, "choices": [str(c) for c in choices], "gold": gold}


def generation(r: dict) -> dict | None:
    answer = r.get("answer")
    if not isinstance(answer, str) or "####" not in answer:
        return None
    return {"question": r["question"], "target": answer.split("####")[-1].strip().replace(",", "")}


def task_yaml(name: str, data: Path, max_new_tokens: int) -> dict:
    head = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
            "test_split": "test", "metadata": {"version": 1.0}}
    if name in GENERATION:
        return {**head, "output_type": "generate_until", "doc_to_text": "Question: {{question}}\nAnswer:",
                "doc_to_target": "{{target}}",
                "generation_kwargs": {"until": ["Question:", "</s>", "<|im_end|>", "<|eot_id|>"], "do_sample": False,
                                      "max_gen_toks": max_new_tokens},
                "filter_list": [{"name": "flexible-extract", "filter": [
                    {"function": "regex", "group_select": -1, "regex_pattern": r"(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"}]}],
                "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                                 "ignore_case": True, "regexes_to_ignore": [",", r"\$", r"\.$"]}]}
    return {**head, "output_type": "multiple_choice",
            "doc_to_text": "{% if question %}{{question}}\nAnswer:{% endif %}", "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{gold}}",
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}


def write_task(name: str, into: Path, max_new_tokens: int = 256) -> int:
    """Write NAME.jsonl and NAME.yaml into a folder lm-eval's TaskManager includes. Returns the item count."""
    _, source, records = load_records(name)
    rows = [generation(r) if name in GENERATION else multiple_choice(name, r) for r in records]
    rows = [r for r in rows if r is not None]
    if not rows:
        raise BenchmarkError(f"benchmark {name}: no usable items in {source}")
    data = into / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (into / f"{name}.yaml").write_text(yaml.safe_dump(task_yaml(name, data, max_new_tokens), sort_keys=False))
    return len(rows)
