"""The model card (README.md of the published repo), built with huggingface_hub's ModelCard and EvalResult.

Everything in it comes from the run: the base's license and languages (never a made-up license),
row counts, contamination, hyperparameters, tokens, hardware, time, the merge check, eval scores,
and the validated request with local paths removed.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from factory.request.config import Request

METHOD = {"lora": "LoRA", "qlora": "QLoRA (LoRA on a 4-bit nf4 base)", None: "full finetune"}


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


@dataclass
class CardFacts:
    """What the run knows, stage by stage, for the card."""
    base_license: str | None
    base_language: str | list[str] | None
    base_revision: str | None
    data: dict
    train: dict
    scores: dict
    versions: dict[str, str]
    merge_check: dict | None = None
    loss_image: str | None = None  # file name beside the card
    extra_tags: list[str] = field(default_factory=list)
    compute: dict | None = None  # Hugging Face Jobs: flavor, price, wall time and cost so far (factory/queue/hf_jobs.py)
    preference: dict | None = None  # a preference run's held-out table (evals.preference.judge)
    margin_image: str | None = None  # its reward-margin curve, beside the card
    score_image: str | None = None  # held-out task scores at the evaluations during training, beside the card
    gguf: dict | None = None  # the export stage's files and perplexities (factory/run/export_stage.py)


RL_NAMES = {"dpo": "DPO", "ipo": "IPO (DPO with the IPO loss)", "orpo": "ORPO", "simpo": "SimPO", "kto": "KTO"}


def rl_settings(r: Request) -> str:
    """The preference method and the settings that shape its loss, as the card and the summary print them."""
    if r.rl in ("dpo", "ipo"):
        losses = ["ipo"] if r.rl == "ipo" else (r.dpo_loss_type or ["sigmoid"])
        weights = f", weights {r.dpo_loss_weights}" if r.dpo_loss_weights else ""
        smooth = f", label smoothing {r.dpo_label_smoothing:g}" if r.dpo_label_smoothing else ""
        return f"{RL_NAMES[r.rl]}: beta {r.beta:g}, loss {' + '.join(losses)}{weights}{smooth}; reference: the base"
    if r.rl == "orpo":
        return f"ORPO: orpo_alpha {r.beta:g} (odds-ratio weight), NLL on the chosen sequences; no reference model"
    if r.rl == "simpo":
        return (f"SimPO: beta {r.beta:g}, gamma {r.simpo_gamma:g}, cpo_alpha {r.cpo_alpha:g} (NLL weight); "
                "no reference model")
    return (f"KTO: beta {r.beta:g}, desirable weight {r.kto_desirable_weight:g}, undesirable weight "
            f"{r.kto_undesirable_weight:g}; reference: the base")


def build_card(request: Request, facts: CardFacts) -> str:
    """The card for the merged model, or for the adapter alone when the request publishes that."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    adapter_only = request.publish.adapter
    hub_datasets = [d.path for d in request.datasets if not d.is_local]
    local_base = Path(request.base_model).expanduser().is_dir()  # a folder on this machine: never named in a card
    eval_results = [EvalResult(task_type="text-generation", dataset_type=task, dataset_name=task,
                               metric_type=pair["finetuned"]["metric"], metric_value=round(pair["finetuned"]["value"], 4),
                               metric_name=f"{pair['finetuned']['metric']} ({pair['finetuned']['n']} items)")
                    for task, pair in facts.scores.items()]
    data = ModelCardData(
        base_model=None if local_base else request.base_model,
        base_model_relation=None if local_base else "adapter" if adapter_only else "finetune",
        datasets=hub_datasets or None,
        license=facts.base_license or "other",
        language=facts.base_language,
        library_name="peft" if adapter_only else "transformers",
        pipeline_tag="text-generation",
        tags=["factory", request.adapter or "full", *([request.rl] if request.rl else []),
              *(["packing"] if request.sample_packing and not request.rl else []), *facts.extra_tags],
        model_name=request.hub_model_id,
        eval_results=eval_results or None,
    )
    lines = [
        *_intro(request, facts, adapter_only),
        *_usage(request, adapter_only),
        *_gguf(request, facts.gguf),
        *(_preference(request, facts) if request.rl else []),
        *_evaluation(facts.scores),
        *_training_data(request, facts.data),
        *_contamination(facts.data.get("contamination")),
        *_procedure(request, facts),
        *_limitations(request, facts),
        "## The request", "",
        "<details><summary>The validated request (YAML; local paths reduced to file names)</summary>", "",
        "```yaml", card_request(request).rstrip(), "```", "", "</details>", "",
        "## Framework versions", "",
        *[f"- {k} {v}" for k, v in facts.versions.items()],
    ]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ content }}\n",
                                   content="\n".join(lines)).content


def _intro(request: Request, facts: CardFacts, adapter_only: bool) -> list[str]:
    rev = f" (revision `{facts.base_revision}`)" if facts.base_revision else ""
    base = f"`{Path(request.base_model).name}` (a local model folder)" if Path(request.base_model).expanduser().is_dir() \
        else f"`{request.base_model}`"
    data = ", ".join(f"`{d.path}`" if not d.is_local else "a local dataset" for d in request.datasets)
    lines = [f"# {request.hub_model_id or 'finetuned model'}", "",
             f"A {METHOD[request.adapter]} of {base}{rev} on {data}"
             + (f", trained on preferences with {RL_NAMES[request.rl]}" if request.rl else "")
             + ", made with the model factory.",
             ""]
    if adapter_only:
        lines += ["This repository holds only the LoRA adapter: load it on top of the base model.", ""]
    if not facts.base_license:
        lines += ["**License:** the base model's card names no license, so this card says `other`; check the base "
                  "model's terms before you use or share this model.", ""]
    return lines


def _usage(request: Request, adapter_only: bool) -> list[str]:
    repo = request.hub_model_id or "this-repo"
    load = (f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}", dtype="auto")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")') if adapter_only else (
            f'model = AutoModelForCausalLM.from_pretrained("{repo}", dtype="auto")\n'
            f'tokenizer = AutoTokenizer.from_pretrained("{repo}")')
    imports = ("from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer" if adapter_only
               else "from transformers import AutoModelForCausalLM, AutoTokenizer")
    return ["## How to use", "", "The tokenizer carries the chat template the model was trained with:", "", "```python",
            imports, "", load, 'messages = [{"role": "user", "content": "Hello! What can you do?"}]',
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
            "return_dict=True)",
            "output = model.generate(**inputs, max_new_tokens=128)",
            "print(tokenizer.decode(output[0][inputs[\"input_ids\"].shape[1]:], skip_special_tokens=True))",
            "```", ""]


def _gguf(request: Request, gguf: dict | None) -> list[str]:
    """Where the GGUF files are and the one command that runs them."""
    if not gguf:
        return []
    from factory.base.sizes import size_text

    repo = f"{request.hub_model_id or 'this-repo'}-GGUF"
    first = next((f for f in gguf["files"] if f["type"] == "q8_0"), gguf["files"][0])
    files = ", ".join(f"{f['type'].upper()} ({size_text(f['bytes'])})" for f in gguf["files"])
    engine = (gguf.get("measured") or {}).get("engine")
    measured = f"; its card has each file's perplexity, measured in {engine}" if engine else ""
    return ["## GGUF (llama.cpp, Ollama, LM Studio)", "", f"`{repo}` holds this model as GGUF files: {files}"
            f"{measured}. To run it:", "", "```bash", f"ollama run hf.co/{repo}:{first['type'].upper()}", "```", ""]


def _preference(request: Request, facts: CardFacts) -> list[str]:
    """The held-out pairs' table: how often each model prefers the chosen answer, by how much, and the mean
    log-probs of both answers (both falling is a known failure of DPO)."""
    p = facts.preference
    lines = ["## Preference on held-out pairs (base vs finetuned)", ""]
    if not p or not p.get("pairs"):
        return lines + ["No held-out pairs to judge on (`val_set_size: 0`, or KTO completions without a desirable and an "
                        "undesirable answer to the same held-out prompt), so the card makes no claim about how the "
                        "model's preferences changed.", ""]
    unit = "per-token log-prob" if p["per_token"] else "summed log-prob"
    lines += [f"{p['pairs']} pairs the model never trained on (a seeded `val_set_size` slice of the preference data). "
              f"A model prefers the chosen answer when its reward, beta x its {unit} of the answer (beta "
              f"{p['beta']:g}), is higher for chosen than for rejected; ties count a half. Errors are standard errors.",
              "", "| model | prefers chosen | reward margin | mean log-prob chosen | mean log-prob rejected |",
              "|---|---:|---:|---:|---:|"]
    for name in ("base", "finetuned"):
        m = p["models"][name]
        lines.append(f"| {name} | {m['accuracy']:.1%} ± {m['accuracy_se']:.1%} | {m['margin']:+.3f} ± {m['margin_se']:.3f} "
                     f"| {m['logp_chosen']:.2f} | {m['logp_rejected']:.2f} |")
    imp = p["implicit"]
    lines += ["", f"DPO's implicit reward of the finetuned model (beta x its log-ratio to the base) ranks chosen over "
                  f"rejected in {imp['accuracy']:.1%} ± {imp['accuracy_se']:.1%} of the pairs, mean margin "
                  f"{imp['margin']:+.3f} ± {imp['margin_se']:.3f}."]
    b, f = p["models"]["base"], p["models"]["finetuned"]
    if f["logp_chosen"] < b["logp_chosen"] and f["logp_rejected"] < b["logp_rejected"]:
        lines += ["", "**Note:** the finetuned model gives both the chosen and the rejected answers a lower "
                      "log-probability than the base did; the margin grew by pushing both down, a known failure of "
                      "preference training that can make answers worse. Check the chat tab before you use it."]
    if facts.margin_image:
        lines += ["", f"![Reward margin during training]({facts.margin_image})"]
    return lines + [""]


def _evaluation(scores: dict) -> list[str]:
    lines = ["## Evaluation (base vs finetuned, same items)", "",
             "Scores with their standard error; `items` is the number of test items scored (a seeded random subset "
             "when the request sets `evals.limit`), the same for both models.", "",
             "| task | metric | items | base | finetuned | delta |", "|---|---|---:|---:|---:|---:|"]
    for task, pair in scores.items():
        b, f = pair["base"], pair["finetuned"]
        lines.append(f"| {task} | {f['metric']} | {f['n']} | {plus_minus(b)} | {plus_minus(f)} | {f['value'] - b['value']:+.3f} |")
    if not scores:
        lines.append("| (no eval tasks in the request) | | | | | |")
    cached = [(task, pair["base"]["cached"]) for task, pair in scores.items() if pair["base"].get("cached")]
    if cached:
        lines.append("")
        lines += [f"- {task}, base: cached from {when} (scored by an earlier job with the same base revision, items, "
                  "chat template, generation settings and library versions)" for task, when in cached]
    return lines + [""]


def _training_data(request: Request, data: dict) -> list[str]:
    lines = ["## Training data", "", "| dataset | revision | format | rows | used | malformed | duplicates |",
             "|---|---|---|---:|---:|---:|---:|"]
    for spec, d in zip(request.datasets, data["datasets"]):
        name = f"`{spec.path}`" if not spec.is_local else "a local file"
        rev = f"`{d['revision'][:12]}`" if d.get("revision") else "-"
        lines.append(f"| {name} | {rev} | {spec.type} | {d['rows']} | {d['used']} | {d['malformed']} | {d['duplicates']} |")
    if request.rl:
        unit = data.get("unit", "pairs")
        return lines + ["", f"{data['train_samples']} training {unit} and {data['eval_samples']} held-out pairs after "
                            f"{data['dropped']} longer than `sequence_len: {request.sequence_len}` were dropped and "
                            f"{data.get('same_answer_pairs', 0)} rows whose chosen equals their rejected answer were "
                            "dropped.", ""]
    return lines + ["", f"{data['train_samples']} training and {data['eval_samples']} evaluation samples after "
                        f"{data['dropped']} over-long samples were dropped and {data['truncated']} truncated "
                        f"(`sequence_len: {request.sequence_len}`)"
                        + (f" and {data.get('too_short', 0)} shorter than `min_sample_len: {request.min_sample_len}` "
                           "were dropped" if request.min_sample_len else "") + ".", ""]


def _contamination(summary: dict | None) -> list[str]:
    """Per benchmark, how many test items overlap the training data."""
    if summary is None:
        return ["## Benchmark contamination", "", "Not checked (the request named no `contamination.benchmarks`).", ""]
    action = {"warn": "kept in training (policy `warn`)",
              "drop": f"dropped before training ({summary['rows_dropped']} rows)", "block": ""}[summary["policy"]]
    outcome = (f"{summary['rows_flagged']} training rows overlapped and were {action}." if summary["rows_flagged"]
               else f"No training row overlapped (policy `{summary['policy']}`).")
    if unchecked := summary.get("malformed_rows_not_checked"):
        outcome += f" {unchecked} rows dropped as malformed were not checked (they were not trained on)."
    lines = ["## Benchmark contamination", "",
             "Training rows checked against each benchmark's test items by word 13-gram overlap and by the GPT-4 "
             f"report's 50-character substring method. {outcome}", "",
             "| benchmark | test items | overlapping items | rate | by 13-gram | by substring |", "|---|---:|---:|---:|---:|---:|"]
    for name, b in summary["benchmarks"].items():
        lines.append(f"| {name} | {b['items']} | {b['contaminated']} | {b['rate']:.2%} | {b['by_method']['ngram']} "
                     f"| {b['by_method']['substring']} |")
    return lines + [""]


def _procedure(request: Request, facts: CardFacts) -> list[str]:
    t, r = facts.train, request
    hyper = {"method": METHOD[r.adapter] + (f"; {rl_settings(r)}" if r.rl else ""), "learning rate": f"{r.learning_rate:g} ({r.lr_scheduler}, warmup "
             f"{r.warmup_steps if r.warmup_steps is not None else r.warmup_ratio})",
             "epochs / max steps": f"{r.num_epochs:g} / {r.max_steps or '-'}",
             "batch": f"{r.micro_batch_size} per device x {r.gradient_accumulation_steps} accumulation",
             "sequence length": r.sequence_len,
             "packing": "each micro-batch's sequences in one row" if r.rl else "on" if r.sample_packing else "off",
             "optimizer": f"{r.optimizer}, weight decay {r.weight_decay:g}, max grad norm {r.max_grad_norm:g}",
             "seed": r.seed}
    if r.adapter:
        targets = r.lora_target_modules if isinstance(r.lora_target_modules, str) else ", ".join(r.lora_target_modules or [])
        hyper["LoRA"] = (f"r {r.lora_r}, alpha {r.lora_alpha}, dropout {r.lora_dropout:g}, targets "
                         f"{'all linear layers' if r.lora_target_linear else targets}"
                         + ("; on the base loaded in 8 bits (LLM.int8)" if r.load_in_8bit else ""))
    if r.special_tokens or r.tokens:
        added = [f"{k}={v}" for k, v in (r.special_tokens or {}).items()] + list(r.tokens or [])
        hyper["added tokens"] = (", ".join(added) + "; embeddings resized"
                                 + ("; embedding and output layers trained in full and merged" if r.adapter else ""))
    lines = ["## Training procedure", "", "| setting | value |", "|---|---|",
             *[f"| {k} | {v} |" for k, v in hyper.items()], "",
             f"- steps: {t['steps']}; real tokens trained: {t.get('tokens_seen') or t['tokens']:,}"
             f" ({t['tokens']:,} per epoch)",
             f"- packing efficiency: {t['packing_efficiency']:.1%}" if t.get("packing_efficiency") else "- packing: off",
             f"- final train loss {t['train_loss']:.4f}" + (f", eval loss {t['eval_loss']:.4f}" if t.get("eval_loss") is not None else ""),
             f"- hardware: {t['hardware']}; training wall time {t['seconds']:.0f} s"]
    if c := facts.compute:
        lines.append(f"- ran on Hugging Face Jobs, flavor `{c['flavor']}` ({c['hardware']}, ${c['usd_per_hour']:.2f}/h): "
                     f"{c['wall_min']:.1f} min from the job's start to this card, about ${c['usd']:.2f} "
                     "(the upload after it is billed too)")
    if facts.merge_check:
        m = facts.merge_check
        lines.append(f"- merge: {'into the 4-bit base dequantised to the compute dtype; ' if r.adapter == 'qlora' else ''}"
                     f"largest |logit difference| from the {m['against']} it was trained with: "
                     f"{m['max_abs_logit_diff']:.2e} over {m['probe_tokens']} tokens")
    if kept := t.get("kept"):
        better = "higher" if kept["greater_is_better"] else "lower"
        lines.append(f"- kept checkpoint: step {kept['step']} of {kept['last_step']}, the best {kept['metric']} "
                     f"({kept['value']:.4f}; {better} is better) of the evaluations during training "
                     "(load_best_model_at_end); the later steps were discarded")
    if facts.loss_image:
        lines += ["", f"![Training loss]({facts.loss_image})"]
    if facts.score_image:
        lines += ["", f"![Held-out task scores during training]({facts.score_image})"]
    return lines + [""]


def _limitations(request: Request, facts: CardFacts) -> list[str]:
    lines = ["## Limitations", "",
             f"- This model inherits the limitations and biases of `{_base_name(request)}` and of its training data; "
             "finetuning does not remove them.",
             f"- It was trained on {facts.data['train_samples']} examples; behaviour outside that data is not evaluated here."]
    if facts.scores and request.evals.limit:
        lines.append(f"- Scores are on a seeded random subset of at most {request.evals.limit} items per task; read "
                     "them with their standard errors.")
    if not facts.scores:
        lines.append("- No benchmark was run: the card makes no claim about quality.")
    if facts.data.get("contamination") is None:
        lines.append("- The training data was not checked for benchmark contamination.")
    return lines + [""]


def _base_name(request: Request) -> str:
    """The base as a card may name it: the Hub id, or only the folder's name for a local model."""
    return Path(request.base_model).name if Path(request.base_model).expanduser().is_dir() else request.base_model


def plus_minus(score: dict) -> str:
    err = score.get("stderr")
    return f"{score['value']:.3f}" + (f" ± {err:.3f}" if err is not None else "")


def card_request(request: Request) -> str:
    """The validated request with local paths reduced to file names and no output_dir."""
    datasets = [d.model_copy(update={"path": Path(d.path).name}) if d.is_local else d for d in request.datasets]
    benchmarks = [f"{b.partition('=')[0]}={Path(b.partition('=')[2]).name}" if "=" in b else b
                  for b in request.contamination.benchmarks]
    model = request.contamination.embedding_model
    contamination = request.contamination.model_copy(update={"benchmarks": benchmarks,
                                                             "embedding_model": Path(model).name if model else None})
    local_base = Path(request.base_model).expanduser()
    base = Path(request.base_model).name if local_base.is_dir() or local_base.is_file() else request.base_model
    folders = {k: Path(getattr(request, k)).name for k in ("dataset_prepared_path", "lora_model_dir",
                                                            "resume_from_checkpoint") if getattr(request, k)}
    return request.model_copy(update={"datasets": datasets, "output_dir": None, "base_model": base,
                                      "contamination": contamination, **folders,
                                      "mlflow_tracking_uri": None}).sanitized_yaml()  # a URI may hold credentials
