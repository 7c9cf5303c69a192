"""The `factory` command: its parser (one module per command group) and the entry point. Light commands
(--help, validate, lint) import no torch."""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading

from factory.base.errors import DiskFull, TransientError, UserError
from factory.base.redact import redact

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
  factory export ORG/NAME --gguf q8_0       a model as GGUF files (+ Ollama Modelfile) for llama.cpp
  factory space --worker            the web app on http://127.0.0.1:7860, running its own jobs
  factory bot                       the Discord bot (DISCORD_TOKEN, FACTORY_DISCORD_GUILDS)
  factory submit my.yaml            put it in the job queue instead; `factory worker` runs queued jobs
  factory jobs / status ID / logs ID --follow / cancel ID    watch and steer queued jobs

State lives under $FACTORY_HOME (default ~/.factory): hub/ (the local hub), runs/, evals/.
"""


def build_parser() -> argparse.ArgumentParser:
    from factory.cli import bot, chat, contamination, evaluate, export, imports, jobs, requests, runs, space

    p = argparse.ArgumentParser(prog="factory", description="Finetune open LLMs from one YAML request and ship them to the Hub.",
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    requests.add_commands(sub)
    runs.add_commands(sub)
    bot.add_command(sub)
    chat.add_command(sub)
    space.add_commands(sub)
    evaluate.add_command(sub)
    contamination.add_command(sub)
    jobs.add_commands(sub)
    imports.add_command(sub)
    export.add_command(sub)
    return p


# Commands that do long work handle Ctrl-C themselves (factory/base/interrupt.py): the first stops the work at its
# next safe point, a second at once. The worker handles it in its own way (the job goes back to the queue).
LONG_WORK = ("run", "prepare", "demo", "eval", "contamination", "import", "export")


def main(argv: list[str] | None = None) -> int:
    from factory.base import interrupt

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
    except BrokenPipeError:  # `factory validate --keys | head`: the reader left; nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


if __name__ == "__main__":
    entry()
