"""The eval stage of the real demo (`make demo-real`): before (both models scored every job, the stage as it
was) and after (the base's scores cached on the machine), a first and a second job on the same base, with
where the time goes.

    python bench/eval_speed.py [--limit 200] [--finetuned DIR] [--profile]

The request is examples/smollm2-135m-toolcall.yaml (glaive_toolcall_heldout, arc_easy, winogrande; its
evals.limit replaced by --limit). The finetuned model is --finetuned (a demo-real run's `merged` folder),
else the latest demo-real run's, else the base itself stands in (said in the output). The base-score cache
is a temporary folder, empty at the start. --profile: cProfile of the "before" stage, grouped into the
model's forward passes, tokenisation, lm-eval's own work and the rest.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def before(run, resolved: dict, finetuned: str) -> dict:
    """The eval stage as it was: each model loaded and scored on every task, every job."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals.harness import evaluate
    from factory.data import encoded_store

    req = run.request
    template = encoded_store.load_template(run.dir / "data" / "encoded")
    scores: dict = {}
    for which, path in (("base", resolved["base_dir"]), ("finetuned", finetuned)):
        model = AutoModelForCausalLM.from_pretrained(path, dtype="auto")
        tokenizer = AutoTokenizer.from_pretrained(path)
        tokenizer.chat_template = template
        for task, score in evaluate(model, tokenizer, req.evals.tasks, limit=req.evals.limit, seed=req.evals.seed,
                                    substitutions=run.substitutions, max_new_tokens=req.evals.max_new_tokens).items():
            scores.setdefault(task, {})[which] = score.as_dict()
    return scores


def profile_groups(stats) -> dict[str, float]:
    """Seconds of the profile in the model's forward passes, tokenisation and model loading (cumulative time of
    functions that do not call one another, so nothing is counted twice)."""
    groups = {"model forward (torch)": [("torch/nn/modules/module.py", "_call_impl")],
              "tokenisation (lm-eval's calls)": [("lm_eval/models/huggingface.py", f)
                                                 for f in ("tok_encode", "tok_batch_encode", "tok_decode")],
              "model and tokenizer loading": [("models/auto/auto_factory.py", "from_pretrained"),
                                              ("models/auto/tokenization_auto.py", "from_pretrained")]}
    out = {}
    for name, funcs in groups.items():
        seen = {}
        for (f, _, fn), v in stats.stats.items():
            for file_part, func in funcs:
                if file_part in f and fn == func:
                    seen[(file_part, func)] = max(seen.get((file_part, func), 0.0), v[3])
        out[name] = sum(seen.values())
    return out


def main() -> None:
    import cProfile
    import pstats

    import torch
    from transformers.utils import logging as hf_logging

    from factory.base.home import hub_root, runs_root
    from factory.base.progress import Silent
    from factory.demo import demo_real
    from factory.hub.local import LocalHub
    from factory.request.config import load_request
    from factory.run import base_scores
    from factory.run.pipeline import Run, stage_data, stage_eval, stage_resolve

    hf_logging.disable_progress_bar()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--finetuned", type=Path)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    hub = LocalHub(hub_root())
    demo_real.ensure_assets(hub, say=lambda _: None)
    request = load_request(ROOT / "examples" / "smollm2-135m-toolcall.yaml")
    request = request.model_copy(update={"evals": request.evals.model_copy(update={"limit": args.limit})})
    runs = sorted(runs_root().glob("smollm2-135m-toolcall-*/merged/model.safetensors"), key=lambda p: p.stat().st_mtime)
    finetuned = args.finetuned or (runs[-1].parent if runs else None)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    print(f"tasks: {', '.join(request.evals.tasks)}; limit {args.limit}; finetuned model: "
          f"{finetuned or 'none found: the base stands in for it'}")

    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "base_scores"
        base_scores.cache_dir = lambda: cache  # an empty cache for this run, not the machine's

        def new_run(name: str):
            run = Run(request, hub, Silent(), Path(tmp) / name)
            resolved = stage_resolve(run)
            stage_data(run, resolved)
            return run, resolved

        run, resolved = new_run("before")
        path = str(finetuned or resolved["base_dir"])
        profiler = cProfile.Profile() if args.profile else None
        t0 = time.perf_counter()
        with profiler or contextlib.nullcontext():
            old = before(run, resolved, path)
        times = {"before (every job)": time.perf_counter() - t0}
        results = {}
        for name in ("after, first job", "after, second job"):
            run, resolved = new_run(name.replace(" ", "-").replace(",", ""))
            t0 = time.perf_counter()
            results[name] = stage_eval(run, resolved, {"path": path})["scores"]
            times[name] = time.perf_counter() - t0

    print(f"\n{'eval stage':22} {'seconds':>8} {'vs before':>10}  base")
    for name, seconds in times.items():
        base = "scored" if name != "after, second job" else "cached (first job's entry)"
        print(f"{name:22} {seconds:8.1f} {times['before (every job)'] / seconds:9.2f}x  {base}")
    same = all({k: v for k, v in results[n][t][w].items() if k != "cached"} == old[t][w]
               for n in results for t in old for w in ("base", "finetuned"))
    print(f"same scores before and after (value, stderr, items; both jobs): {same}")
    for task, pair in old.items():
        print(f"  {task:24} base {pair['base']['value']:.4f}  finetuned {pair['finetuned']['value']:.4f}  "
              f"items {pair['base']['n']}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        total = times["before (every job)"]
        print("\nwhere the time of the 'before' stage goes (cProfile, outermost frames):")
        groups = profile_groups(stats)
        for name, seconds in groups.items():
            print(f"  {name:28} {seconds:8.1f} s  {seconds / total:6.1%}")
        rest = total - sum(groups.values())
        print(f"  {'everything else':28} {rest:8.1f} s  {rest / total:6.1%}  (lm-eval's task loading, "
              "batching, filters, metrics; the factory's task files)")
    if not same:
        raise SystemExit("the scores differ")


if __name__ == "__main__":
    main()
