"""`factory eval`: score a model (and optionally its base) on lm-eval tasks, in this process."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = """\
tasks: the shipped task files (factory_demo_heldout) and the benchmark registry (gsm8k, mmlu,
arc_easy, arc_challenge, truthfulqa, winogrande, hellaswag; local items under $FACTORY_BENCHMARKS_DIR).
--limit takes a seeded random subset (the same items for both models), not the first N.

example:
  factory eval my-org/tuned --base my-org/base --task arc_easy --task gsm8k --limit 200 --json eval.json
  factory eval my-org/tuned --task arc_easy --limit 50 --export-tasks /tmp/t    and check it with lm_eval
"""


def _model_dir(ref: str) -> Path:
    from factory.hub.choose import default_hub, model_folder

    return model_folder(ref, default_hub())[0]


def cmd_eval(args) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.harness import available_tasks, evaluate
    from factory.base import atomic, interrupt
    from factory.publish.card import plus_minus
    from factory.base.errors import UserError
    from factory.base.home import placeholders

    unknown = [t for t in args.task if t not in available_tasks()]
    if unknown:
        raise UserError(f"unknown task(s) {', '.join(unknown)}; available: {', '.join(available_tasks())}")
    models = {"model": _model_dir(args.model), **({"base": _model_dir(args.base)} if args.base else {})}
    if args.export_tasks:
        _export(args, models)
    scores: dict[str, dict] = {}
    for which, path in models.items():
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(path)
        for task, s in evaluate(model, tokenizer, args.task, limit=args.limit, seed=args.seed,
                                substitutions=placeholders(),
                                apply_chat_template=not args.no_chat_template,
                                max_new_tokens=args.max_new_tokens, check=interrupt.safe_point).items():
            scores.setdefault(task, {})[which] = s.as_dict()
        del model
    print(f"{'task':24} {'metric':12} {'items':>5} " + " ".join(f"{w:>15}" for w in models) +
          (f" {'delta':>7}" if args.base else ""))
    for task, pair in scores.items():
        m = pair["model"]
        line = f"{task:24} {m['metric']:12} {m['n']:>5} " + " ".join(f"{plus_minus(pair[w]):>15}" for w in models)
        print(line + (f" {m['value'] - pair['base']['value']:>+7.3f}" if args.base else ""))
    if args.json:
        interrupt.commit()  # a Ctrl-C that came while printing stops it here: no file for an interrupted run
        atomic.write_json(args.json, scores)
    return 0


def _export(args, models: dict[str, Path]) -> None:
    """The task files and item ids this run scores, and lm-eval's own command line that scores the same."""
    import json
    import shlex

    from evals.harness import lm_eval_command, write_tasks
    from factory.base.home import placeholders

    into = args.export_tasks.resolve()
    into.mkdir(parents=True, exist_ok=True)
    samples = write_tasks(args.task, into, limit=args.limit, seed=args.seed, substitutions=placeholders(),
                          max_new_tokens=args.max_new_tokens)
    samples_file = None
    if samples is not None:
        samples_file = into / "samples.json"
        samples_file.write_text(json.dumps(samples) + "\n")
    print(f"task files and item ids in {into}; the same scores with lm-eval's own command line:")
    for which, path in models.items():
        cmd = lm_eval_command(path, args.task, into, samples_file, seed=args.seed,
                              apply_chat_template=not args.no_chat_template)
        print(f"  {which}: {shlex.join(cmd)}")


def add_command(sub) -> None:
    e = sub.add_parser("eval", help="score a model (and its base) on lm-eval tasks, in process",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help="a model folder or a hub id")
    e.add_argument("--base", help="also score this model on the same items and print the delta")
    e.add_argument("--task", action="append", required=True, help="repeat for several")
    e.add_argument("--limit", type=int, help="a seeded random subset of this many items per task")
    e.add_argument("--seed", type=int, default=1234)
    e.add_argument("--max-new-tokens", type=int, default=256, help="for generative tasks (default 256)")
    e.add_argument("--no-chat-template", action="store_true", help="score raw prompts (base models without a template)")
    e.add_argument("--json", type=Path, metavar="OUT")
    e.add_argument("--export-tasks", type=Path, metavar="DIR",
                   help="also write the task files and item ids into DIR and print lm-eval's command line for them")
    e.set_defaults(fn=cmd_eval)
