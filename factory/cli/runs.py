"""`factory run`, `factory prepare` and `factory demo`: a request run through the pipeline in a terminal (or, with
--events jsonl, for a worker following it on Hugging Face Jobs)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from factory.base.errors import UserError
from factory.cli.requests import _check


def _summary(run, results: dict, out=None) -> None:
    from factory.publish.card import plus_minus as _pm

    out = out or sys.stdout
    scores = results["eval"]["scores"]
    print("\n=== factory summary ===", file=out)
    if scores:
        print(f"{'task':24} {'metric':12} {'items':>5} {'base':>15} {'finetuned':>15} {'delta':>7}", file=out)
        for task, pair in scores.items():
            b, f = pair["base"], pair["finetuned"]
            print(f"{task:24} {f['metric']:12} {f['n']:>5} {_pm(b):>15} {_pm(f):>15} "
                  f"{f['value'] - b['value']:>+7.3f}", file=out)
        for task, pair in scores.items():
            if when := pair["base"].get("cached"):
                print(f"{task}: base: cached from {when} (an earlier job on this machine, same base, items and settings)",
                      file=out)
    if p := results["eval"].get("preference"):
        print(f"held-out pairs ({p['method']}, {p['pairs']} pairs; reward = beta x "
              f"{'per-token' if p['per_token'] else 'summed'} log-prob):", file=out)
        print(f"{'model':10} {'prefers chosen':>16} {'reward margin':>17} {'logp chosen':>12} {'logp rejected':>14}",
              file=out)
        for name in ("base", "finetuned"):
            m = p["models"][name]
            print(f"{name:10} {m['accuracy']:>8.1%} ± {m['accuracy_se']:.1%} {m['margin']:>+9.3f} ± {m['margin_se']:.3f} "
                  f"{m['logp_chosen']:>12.2f} {m['logp_rejected']:>14.2f}", file=out)
    pub = results["publish"]
    print(f"published: {pub.get('repo_id', '-')} @ {pub.get('revision', '-')[:12]} ({pub.get('url', pub.get('skipped'))})", file=out)
    for f in (results.get("export") or {}).get("files", []):
        ppl = f", perplexity {f['perplexity']:.3f}" if f.get("perplexity") is not None else ""
        print(f"GGUF {f['type'].upper():7} {f['file']} ({f['bytes'] / 1e6:.1f} MB{ppl})", file=out)
    if g := pub.get("gguf"):
        print(f"GGUF published: {g['repo_id']} @ {g['revision'][:12]} ({g['url']}); "
              f"ollama run hf.co/{g['repo_id']}:{g['files'][0]['type'].upper()}", file=out)
    print(f"run folder: {run.dir}", file=out)
    print("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
          + f" (total {sum(run.timings.values()):.1f}s)", file=out)


def _console_run(request, hub=None, identity: str | None = None):
    """The run of a request in its run folder, with a console reporter and the request's hub (a stranger's
    job, `identity`: reads as that stranger, with FACTORY_USER_TOKEN when it is set, else public repos only)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file load/save bars; the stages report progress themselves
    from factory.hub.choose import default_hub
    from factory.run.pipeline import Run, run_dir_for
    from factory.base.progress import Console

    if identity is not None and hub is None:
        import os

        from factory.hub.credentials import Token, operator_endpoint
        from factory.hub.choose import stranger_job_hub

        value = os.environ.get("FACTORY_USER_TOKEN")
        token = Token(value, "FACTORY_USER_TOKEN", operator_endpoint()) if value else None
        hub = stranger_job_hub(identity, token, request.hub_endpoint)
    return Run(request=request, hub=hub or default_hub(request.hub_endpoint), reporter=Console(),
               dir=run_dir_for(request), identity=identity)


def _execute(request, hub=None, identity: str | None = None):
    from factory.run.pipeline import execute

    run = _console_run(request, hub, identity)
    results = execute(run)
    if "publish" in results:  # under `accelerate launch`, only the main process gets this far
        _summary(run, results)
    return 0


def cmd_run(args) -> int:
    if (args.request is None) == (args.request_env is None):
        raise UserError("give a request file (factory run REQUEST.yaml) or --request-env VAR, not both")
    if args.request_env is None:
        request = _check(args.request)
    else:
        import os

        from factory.request.config import loads_request

        text = os.environ.get(args.request_env)
        if not text:
            raise UserError(f"--request-env {args.request_env}: that environment variable is empty or unset")
        if args.carried_env:  # a Jobs run: the files the worker sent, in place and checked before anything else
            from factory.queue.carry import receive

            text = receive(os.environ.get(args.carried_env) or "", text,
                           say=lambda line: print(line, file=sys.stderr, flush=True))
        request = loads_request(text, f"${args.request_env}")
    if args.identity is not None:
        from factory.admission.admission import check_identity

        check_identity(args.identity, "--identity")
    if args.events == "console":
        return _execute(request, identity=args.identity)
    return _execute_jsonl(request, args.run_name, args.identity)


def _execute_jsonl(request, run_name: str | None, identity: str | None = None) -> int:
    """The run with its events as JSON lines on stdout (factory/run/event_lines.py), for a worker to follow."""
    import json
    import os
    import re

    from factory.run.event_lines import JsonLines
    from factory.run.pipeline import Ranks, execute
    from factory.queue.worker import summary

    if os.environ.get("FACTORY_JOBS_COMPUTE"):  # the cost on the card counts from this process's start
        os.environ["FACTORY_JOBS_COMPUTE"] = json.dumps({**json.loads(os.environ["FACTORY_JOBS_COMPUTE"]),
                                                         "started": time.time()})
    run = _console_run(request, identity=identity)
    if run_name is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", run_name):
            raise UserError(f"--run-name '{run_name}': lower-case letters, digits and dashes only")
        from factory.base.home import runs_root

        run.dir = runs_root() / run_name
    lines = JsonLines()
    run.reporter = lines
    if Ranks().main:  # under `accelerate launch`, one process speaks for the job
        from factory.queue.hf_jobs import publish_gate

        run.gate = publish_gate(lines)
    results = execute(run)
    if "publish" in results:
        lines.result(summary(run, results))
    return 0


def cmd_prepare(args) -> int:
    from factory.base import atomic, interrupt
    from factory.run.pipeline import execute
    from factory.run.prepare import packing_report, print_report

    request = _check(args.request)
    run = _console_run(request)
    t0 = time.time()
    results = execute(run, stop_after="data")
    report = packing_report(request, run, results["data"], time.time() - t0)
    interrupt.commit()  # the report is what prepare makes: a Ctrl-C before this stops it, none after
    print_report(report, sys.stdout)
    if args.json:
        atomic.write_json(Path(args.json), report)
    return 0


def cmd_demo(args) -> int:
    import shutil

    from factory.demo import demo
    from factory.request.config import load_request
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub
    from factory.run.pipeline import run_dir_for
    from factory.base.progress import Console

    t0 = time.time()
    hub = LocalHub(hub_root())  # the demo is the offline default, token or not
    if args.real or args.dpo:
        from factory.demo import demo_dpo, demo_real  # the same steps on the real SmolLM2 base

        demo = demo_dpo if args.dpo else demo_real
        if args.fresh:
            shutil.rmtree(run_dir_for(load_request(demo.REQUEST)), ignore_errors=True)
        demo.ensure_assets(hub)
    else:
        request = load_request(demo.REQUEST)
        if args.fresh:
            demo.reset(hub)
            shutil.rmtree(run_dir_for(request), ignore_errors=True)
        demo.ensure_assets(hub, Console())
    request = _check(str(demo.REQUEST), hub=hub)
    code = _execute(request, hub=hub)
    if code == 0 and args.real and not args.dpo:  # the exported file answers the same held-out calls
        demo.gguf_answers(run_dir_for(request))
    print(f"demo wall time: {time.time() - t0:.1f}s")
    print(demo.WHAT_IT_SHOWS)
    return code


def add_commands(sub) -> None:
    r = sub.add_parser("run", help="run a request: data, train, merge, eval, card, publish (resumes when re-run)")
    r.add_argument("request", nargs="?", help="the request YAML")
    r.add_argument("--events", choices=["console", "jsonl"], default="console",
                   help="console: stage lines and progress bars on stderr (default); jsonl: one JSON object per event "
                   "on stdout, for a worker following the run on another machine (Hugging Face Jobs)")
    r.add_argument("--request-env", metavar="VAR", help="read the request YAML from this environment variable "
                   "instead of a file (how the Jobs backend passes it)")
    r.add_argument("--carried-env", metavar="VAR", help="with --request-env: the manifest of files the worker sent "
                   "with the job (Hugging Face Jobs); each is put in place and checked by hash before the run starts")
    r.add_argument("--run-name", help="the run folder's name under $FACTORY_HOME/runs (default: from the request)")
    r.add_argument("--identity", metavar="ID", help="run a front door's job as its submitter (hf:<user>, discord:<id>, "
                   "api:<name>), as the Jobs backend does: reads use FACTORY_USER_TOKEN or public repos only, and the "
                   "publish checks that the repo is theirs")
    r.set_defaults(fn=cmd_run)
    pr = sub.add_parser("prepare", help="tokenise and pack without training: rows, tokens, packing efficiency, steps")
    pr.add_argument("request", help="the request YAML")
    pr.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    pr.set_defaults(fn=cmd_prepare)
    d = sub.add_parser("demo", help="the whole job offline on the embedded tiny model and synthetic data")
    d.add_argument("--fresh", action="store_true", help="rebuild the demo base, data and run from scratch")
    d.add_argument("--real", action="store_true", help="LoRA on the real SmolLM2-135M-Instruct (downloaded once with "
                   "pip, 93 MB) to call tools: a real skill gain, about 15 minutes on 2 cores")
    d.add_argument("--dpo", action="store_true", help="DPO of the real SmolLM2-135M-Instruct on HH-RLHF's harmless "
                   "pairs (examples/smollm2-135m-dpo.yaml), judged on 100 held-out pairs: about 15 minutes on 2 cores")
    d.set_defaults(fn=cmd_demo)
