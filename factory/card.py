"""The model card (README.md of the merged model), built with huggingface_hub's ModelCard."""

from __future__ import annotations

import platform

from factory.config import Request


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def build_card(request: Request, *, base_license: str | None, base_revision: str | None,
               data_summary: dict, train_summary: dict, scores: dict, versions: dict[str, str],
               merge_check: dict | None = None) -> str:
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    hub_datasets = [d.path for d in request.datasets if not d.is_local]
    eval_results = []
    for task, pair in scores.items():
        ft = pair["finetuned"]
        eval_results.append(EvalResult(
            task_type="text-generation", dataset_type=task, dataset_name=task, metric_type=ft["metric"],
            metric_value=round(ft["value"], 4), metric_name=f"{ft['metric']} ({ft['n']} items)",
        ))
    data = ModelCardData(
        base_model=request.base_model,
        base_model_relation="finetune",
        datasets=hub_datasets or None,
        license=base_license,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["factory", "finetuned", request.adapter or "full-finetune", *(["packing"] if request.sample_packing else [])],
        model_name=request.hub_model_id,
        eval_results=eval_results or None,
    )
    method = {"lora": "LoRA", "qlora": "QLoRA (4-bit nf4 base)", None: "full finetune"}[request.adapter]
    lines = [
        f"# {request.hub_model_id or 'finetuned model'}",
        "",
        f"A {method} of [`{request.base_model}`]"
        f"{f' (revision `{base_revision}`)' if base_revision else ''}, made by the model factory.",
        "",
        "## Evaluation (base vs finetuned, same items)",
        "",
        "Scores with their standard error; `items` is the number of test items scored (a seeded random subset "
        "when the request sets `evals.limit`), the same for both models.",
        "",
        "| task | metric | items | base | finetuned | delta |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, pair in scores.items():
        b, f = pair["base"], pair["finetuned"]
        lines.append(f"| {task} | {f['metric']} | {f['n']} | {plus_minus(b)} | {plus_minus(f)} | {f['value'] - b['value']:+.3f} |")
    if not scores:
        lines.append("| (no eval tasks in the request) | | | | | |")
    lines += [
        "",
        "## Training",
        "",
        f"- examples: {data_summary['train_samples']} train, {data_summary['eval_samples']} eval "
        f"(from {data_summary['rows']} rows: {data_summary['malformed']} malformed, "
        f"{data_summary['duplicates']} duplicates, {data_summary['dropped']} over-long dropped, "
        f"{data_summary['truncated']} truncated)",
        f"- tokens: {train_summary['tokens']:,} per epoch; epochs: {request.num_epochs}; steps: {train_summary['steps']}",
        f"- packing: {'on, efficiency ' + format(train_summary['packing_efficiency'], '.1%') if request.sample_packing else 'off'}",
        f"- final train loss: {train_summary['train_loss']:.4f}"
        + (f"; eval loss: {train_summary['eval_loss']:.4f}" if train_summary.get("eval_loss") is not None else ""),
        f"- time: {train_summary['seconds']:.0f} s on {train_summary['hardware']}",
        *([f"- merge: {'into the 4-bit base dequantised to the compute dtype; ' if request.adapter == 'qlora' else ''}"
           f"largest |logit difference| from the {merge_check['against']} it was trained with: "
           f"{merge_check['max_abs_logit_diff']:.2e} over {merge_check['probe_tokens']} tokens"] if merge_check else []),
        "- datasets: " + ", ".join(f"`{d.path}`" if not d.is_local else "a local file" for d in request.datasets),
        "",
        *_contamination_lines(data_summary.get("contamination")),
        "## Versions",
        "",
        *[f"- {k} {v}" for k, v in versions.items()],
        "",
        "## The request",
        "",
        "```yaml",
        _card_request(request).rstrip(),
        "```",
    ]
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n{{ content }}\n",
                                   content="\n".join(lines)).content


def plus_minus(score: dict) -> str:
    err = score.get("stderr")
    return f"{score['value']:.3f}" + (f" ± {err:.3f}" if err is not None else "")


def _card_request(request: Request) -> str:
    """The validated request, with local dataset paths reduced to file names and no output_dir: no local paths in cards."""
    from pathlib import Path

    datasets = [d.model_copy(update={"path": Path(d.path).name}) if d.is_local else d for d in request.datasets]
    benchmarks = [f"{b.partition('=')[0]}={Path(b.partition('=')[2]).name}" if "=" in b else b
                  for b in request.contamination.benchmarks]
    model = request.contamination.embedding_model
    contamination = request.contamination.model_copy(update={"benchmarks": benchmarks,
                                                             "embedding_model": Path(model).name if model else None})
    return request.model_copy(update={"datasets": datasets, "output_dir": None,
                                      "contamination": contamination}).sanitized_yaml()


def _contamination_lines(summary: dict | None) -> list[str]:
    """The card's contamination section: per benchmark, how many test items overlap the training data."""
    if summary is None:
        return ["## Benchmark contamination", "", "Not checked (the request named no `contamination.benchmarks`).", ""]
    action = {"warn": "kept in training (policy `warn`)",
              "drop": f"dropped before training ({summary['rows_dropped']} rows)", "block": ""}[summary["policy"]]
    outcome = (f"{summary['rows_flagged']} training rows overlapped and were {action}." if summary["rows_flagged"]
               else f"No training row overlapped (policy `{summary['policy']}`).")
    lines = ["## Benchmark contamination", "",
             "Training rows checked against each benchmark's test items by word 13-gram overlap and by the GPT-4 "
             f"report's 50-character substring method. {outcome}", "",
             "| benchmark | test items | overlapping items | rate | by 13-gram | by substring |", "|---|---:|---:|---:|---:|---:|"]
    for name, b in summary["benchmarks"].items():
        lines.append(f"| {name} | {b['items']} | {b['contaminated']} | {b['rate']:.2%} | {b['by_method']['ngram']} "
                     f"| {b['by_method']['substring']} |")
    return lines + [""]
