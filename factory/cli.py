"""The `factory` command. Light commands (--help, validate, lint) import no torch."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from pathlib import Path

from factory.errors import DiskFull, TransientError, UserError
from factory.redact import redact

EPILOG = """\
examples:
  factory demo                      the whole job offline on the CPU: tiny base, synthetic data,
                                    LoRA with packing, eval base vs finetuned, merge, card, publish
  factory validate my.yaml          check a request (schema + lint) in well under a second
  factory validate --keys           every accepted request key with its default
  factory validate --offline axolotl.yml    an Axolotl config, before its base model is at hand
  factory lint --list               the lint rules and why each exists
  factory prepare my.yaml           tokenise + pack only: rows, tokens, packing efficiency, steps
  factory run my.yaml               run a request; re-running the same request resumes it
  factory eval MODEL --base BASE --task arc_easy --limit 200    score two models on the same items
  factory contamination --data train.jsonl --benchmark gsm8k    benchmark items in a training set
  factory chat MODEL --base auto    talk to a finetuned model and its base, side by side
  factory import FILE.gguf --as ORG/NAME    a GGUF model (llama.cpp, Ollama) into the local hub
  factory space --worker            the web app on http://127.0.0.1:7860, running its own jobs
  factory bot                       the Discord bot (DISCORD_TOKEN, FACTORY_DISCORD_GUILDS)
  factory submit my.yaml            put it in the job queue instead; `factory worker` runs queued jobs
  factory jobs / status ID / logs ID --follow / cancel ID    watch and steer queued jobs

State lives under $FACTORY_HOME (default ~/.factory): hub/ (the local hub), runs/, evals/.
"""


def _check(path: str, out=None, hub=None, require_base: bool = True):
    """Load, validate and lint a request; print warnings; raise UserError on any error."""
    from factory.checks import check_request
    from factory.config import load_request

    request = load_request(path)
    for line in request.compat.summary():  # Axolotl keys that are not request fields: nothing dropped silently
        print(f"  axolotl {line}", file=out or sys.stdout)
    for f in check_request(request, path, hub, require_base=require_base):
        print(f"  {f.severity:7} {f.rule}: {f.message}", file=out or sys.stdout)
    return request


def cmd_validate(args) -> int:
    if args.keys:
        from factory.config import accepted_keys

        print(accepted_keys())
        return 0
    if not args.request:
        raise UserError("give a request file: factory validate REQUEST.yaml")
    request = _check(args.request, require_base=not args.offline)
    _print_costs(request, args.flavor)
    print(f"{args.request}: valid")
    return 0


def _print_costs(request, flavors: list[str] | None) -> None:
    """The estimated time and cost on Hugging Face Jobs: on --flavor, or where the request or backend runs it."""
    from factory.compute import estimate_request
    from factory.hf_jobs import backend
    from factory.hub import default_hub

    if not flavors and (backend() == "hf-jobs" or request.compute.flavor):
        flavors = [None]  # the request's flavor, else the operator's default
    for flavor in flavors or []:
        try:
            print(f"  cost    hf-jobs {estimate_request(request, default_hub(request.hub_endpoint), flavor).line()}")
        except UserError as exc:
            print(f"  cost    hf-jobs {flavor or ''}: not estimated: {exc}")


def cmd_lint(args) -> int:
    from factory.lint import RULES

    for rule in RULES:
        print(f"{rule.id} [{rule.severity}]\n    {rule.reason}")
    return 0


def _summary(run, results: dict, out=None) -> None:
    from factory.card import plus_minus as _pm

    out = out or sys.stdout
    scores = results["eval"]["scores"]
    print("\n=== factory summary ===", file=out)
    if scores:
        print(f"{'task':24} {'metric':12} {'items':>5} {'base':>15} {'finetuned':>15} {'delta':>7}", file=out)
        for task, pair in scores.items():
            b, f = pair["base"], pair["finetuned"]
            print(f"{task:24} {f['metric']:12} {f['n']:>5} {_pm(b):>15} {_pm(f):>15} "
                  f"{f['value'] - b['value']:>+7.3f}", file=out)
    pub = results["publish"]
    print(f"published: {pub.get('repo_id', '-')} @ {pub.get('revision', '-')[:12]} ({pub.get('url', pub.get('skipped'))})", file=out)
    print(f"run folder: {run.dir}", file=out)
    print("time per stage: " + ", ".join(f"{k} {v:.1f}s" for k, v in run.timings.items())
          + f" (total {sum(run.timings.values()):.1f}s)", file=out)


def _console_run(request, hub=None, identity: str | None = None):
    """The run of a request in its run folder, with a console reporter and the request's hub (a stranger's
    job, `identity`: reads as that stranger, with FACTORY_USER_TOKEN when it is set, else public repos only)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # per-file load/save bars; the stages report progress themselves
    from factory.hub import default_hub
    from factory.pipeline import Run, run_dir_for
    from factory.progress import Console

    if identity is not None and hub is None:
        import os

        from factory.credentials import Token, operator_endpoint
        from factory.hub import stranger_job_hub

        value = os.environ.get("FACTORY_USER_TOKEN")
        token = Token(value, "FACTORY_USER_TOKEN", operator_endpoint()) if value else None
        hub = stranger_job_hub(identity, token, request.hub_endpoint)
    return Run(request=request, hub=hub or default_hub(request.hub_endpoint), reporter=Console(),
               dir=run_dir_for(request), identity=identity)


def _execute(request, hub=None, identity: str | None = None):
    from factory.pipeline import execute

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

        from factory.config import loads_request

        text = os.environ.get(args.request_env)
        if not text:
            raise UserError(f"--request-env {args.request_env}: that environment variable is empty or unset")
        request = loads_request(text, f"${args.request_env}")
    if args.identity is not None:
        from factory.admission import check_identity

        check_identity(args.identity, "--identity")
    if args.events == "console":
        return _execute(request, identity=args.identity)
    return _execute_jsonl(request, args.run_name, args.identity)


def _execute_jsonl(request, run_name: str | None, identity: str | None = None) -> int:
    """The run with its events as JSON lines on stdout (factory/event_lines.py), for a worker to follow."""
    import json
    import os
    import re

    from factory.event_lines import JsonLines
    from factory.pipeline import Ranks, execute
    from factory.worker import summary

    if os.environ.get("FACTORY_JOBS_COMPUTE"):  # the cost on the card counts from this process's start
        os.environ["FACTORY_JOBS_COMPUTE"] = json.dumps({**json.loads(os.environ["FACTORY_JOBS_COMPUTE"]),
                                                         "started": time.time()})
    run = _console_run(request, identity=identity)
    if run_name is not None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", run_name):
            raise UserError(f"--run-name '{run_name}': lower-case letters, digits and dashes only")
        from factory.home import runs_root

        run.dir = runs_root() / run_name
    lines = JsonLines()
    run.reporter = lines
    if Ranks().main:  # under `accelerate launch`, one process speaks for the job
        from factory.hf_jobs import publish_gate

        run.gate = publish_gate(lines)
    results = execute(run)
    if "publish" in results:
        lines.result(summary(run, results))
    return 0


def cmd_prepare(args) -> int:
    from factory import atomic, interrupt
    from factory.pipeline import execute
    from factory.prepare import packing_report, print_report

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

    from factory import demo
    from factory.config import load_request
    from factory.home import hub_root
    from factory.hub import LocalHub
    from factory.pipeline import run_dir_for
    from factory.progress import Console

    t0 = time.time()
    hub = LocalHub(hub_root())  # the demo is the offline default, token or not
    if args.real:
        from factory import demo_real as demo  # the same steps on the real SmolLM2 base

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
    print(f"demo wall time: {time.time() - t0:.1f}s")
    print(demo.WHAT_IT_SHOWS)
    return code


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="factory", description="Finetune open LLMs from one YAML request and ship them to the Hub.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    v = sub.add_parser("validate", help="check a request: schema errors (with file:line) and lint findings; exit 0 or 2")
    v.add_argument("request", nargs="?", help="the request YAML")
    v.add_argument("--keys", action="store_true", help="print every accepted key with its type and default")
    v.add_argument("--offline", action="store_true", help="check without the base model (not downloaded, not in the "
                   "local hub): a warning instead of an error, and the lint rules that need its config are skipped")
    v.add_argument("--flavor", action="append", metavar="FLAVOR", help="estimate the run's time and cost on this "
                   "Hugging Face Jobs flavor (repeatable; prices from the Hub, or FACTORY_JOBS_PRICES)")
    v.set_defaults(fn=cmd_validate)
    lt = sub.add_parser("lint", help="the lint rules")
    lt.add_argument("--list", action="store_true", required=True, help="print each rule with the reason it exists")
    lt.set_defaults(fn=cmd_lint)
    r = sub.add_parser("run", help="run a request: data, train, merge, eval, card, publish (resumes when re-run)")
    r.add_argument("request", nargs="?", help="the request YAML")
    r.add_argument("--events", choices=["console", "jsonl"], default="console",
                   help="console: stage lines and progress bars on stderr (default); jsonl: one JSON object per event "
                   "on stdout, for a worker following the run on another machine (Hugging Face Jobs)")
    r.add_argument("--request-env", metavar="VAR", help="read the request YAML from this environment variable "
                   "instead of a file (how the Jobs backend passes it)")
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
    d.set_defaults(fn=cmd_demo)
    from factory import cli_bot, cli_chat, cli_contamination, cli_eval, cli_import, cli_jobs, cli_space

    cli_bot.add_command(sub)
    cli_chat.add_command(sub)
    cli_space.add_commands(sub)
    cli_eval.add_command(sub)
    cli_contamination.add_command(sub)
    cli_jobs.add_commands(sub)
    cli_import.add_command(sub)
    return p


# Commands that do long work handle Ctrl-C themselves (factory/interrupt.py): the first stops the work at its
# next safe point, a second at once. The worker handles it in its own way (the job goes back to the queue).
LONG_WORK = ("run", "prepare", "demo", "eval", "contamination", "import")


def main(argv: list[str] | None = None) -> int:
    from factory import interrupt

    words = sys.argv[1:] if argv is None else argv
    long_work = bool(words) and words[0] in LONG_WORK and threading.current_thread() is threading.main_thread()
    try:
        # Installed before anything else: no Ctrl-C lands where Python would raise KeyboardInterrupt.
        with interrupt.handling(restore=argv is not None) if long_work else contextlib.nullcontext():
            args = build_parser().parse_args(argv)
            code = args.fn(args)
            if long_work:
                interrupt.commit()  # a Ctrl-C seen while the command ended: it reports interrupted, not done
        return code
    except interrupt.Interrupted:
        print(interrupt.MESSAGE, file=sys.stderr)
        return interrupt.Interrupted.exit_code
    except UserError as exc:
        print(redact(f"error: {exc}"), file=sys.stderr)
        return exc.exit_code
    except (DiskFull, TransientError) as exc:  # not the user's input: worth trying again later
        print(redact(f"error: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a Ctrl-C in a command that does no long work, or before the handler was installed
        print(interrupt.MESSAGE, file=sys.stderr)
        return 130


def entry() -> None:
    """The `factory` command: main(), then Ctrl-C is ignored while the interpreter shuts down, so a
    finished command never ends in a KeyboardInterrupt traceback from an exit hook."""
    import signal

    try:
        code = main()
    except KeyboardInterrupt:
        code = 130
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    entry()
