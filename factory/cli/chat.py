"""`factory chat MODEL [--base BASE]`: talk to a model in the terminal, side by side with its base."""

from __future__ import annotations

import sys

HELP = """\
MODEL is a Hub id (or a local-hub id offline), a model folder, or a run folder (its merged/ model).
With --base, every prompt goes to both models and both replies stream, one after the other;
--base auto takes the base named in the model's factory_request.yaml.

in the chat:
  /reset          forget the conversation
  /system TEXT    set the system message (and forget the conversation)
  /quit           leave (or Ctrl-D)

examples:
  factory chat                      the default pair: after `make demo-real`, SmolLM2-135M finetuned to call
                                    tools against SmolLM2-135M-Instruct itself; else the tiny demo and its base
  factory chat factory/tiny-llama-demo-instruct --base auto --temperature 0
  factory chat ~/.factory/runs/job-7 --max-new-tokens 128 --seed 1
"""


def cmd_chat(args) -> int:
    from transformers.utils import logging as hf_logging

    from factory.frontdoor.chat_engine import ChatEngine, Settings, base_of, default_models, model_path
    from factory.base.errors import UserError

    hf_logging.disable_progress_bar()  # per-file loading bars would bury the conversation
    engine = ChatEngine()
    if args.model is None:  # the default pair: the demo's finetune against its own base
        args.model, args.base = default_models(engine.hub)[0], args.base or "auto"
    settings = Settings(args.temperature, args.top_p, args.max_new_tokens, args.seed).checked(engine.token_limit)
    pairs = [("model", args.model)]
    if args.base:
        base = base_of(model_path(args.model, engine.hub)) if args.base == "auto" else args.base
        if not base:
            raise UserError(f"--base auto: {args.model} does not say which base it was trained from; name one")
        pairs.append(("base", base))
    for _, ref in pairs:
        engine.load(ref)  # fail early, before the first prompt
    print(f"chatting with {' and '.join(f'{name} ({ref})' for name, ref in pairs)}; /reset, /system TEXT, /quit",
          file=sys.stderr)
    system = args.system
    history: list[dict] = []
    while True:
        try:
            line = input("you> " if sys.stdin.isatty() else "")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        line = line.strip()
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset" or line.startswith("/system"):
            history = []
            if line.startswith("/system"):
                system = line.removeprefix("/system").strip() or None
            print(f"(conversation reset{'; system: ' + system if system else ''})", file=sys.stderr)
            continue
        history.append({"role": "user", "content": line})
        messages = ([{"role": "system", "content": system}] if system else []) + history
        replies = {}
        for name, ref in pairs:
            print(f"{name}> ", end="", flush=True)
            gen = engine.stream(ref, messages, settings)
            try:
                replies[name] = "".join(_echo(chunk) for chunk in gen)
            except KeyboardInterrupt:
                gen.cancel()
                replies[name] = ""
                print(" (stopped)", end="")
            print(flush=True)
        history.append({"role": "assistant", "content": replies["model"]})  # the conversation is the model's


def _echo(chunk: str) -> str:
    print(chunk, end="", flush=True)
    return chunk


def add_command(sub) -> None:
    import argparse

    c = sub.add_parser("chat", help="chat with a model in the terminal, side by side with its base (--base)",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("model", nargs="?", help="Hub or local-hub id, model folder, or run folder (default: the "
                   "`make demo-real` finetune when it exists, else the tiny demo's; with --base auto)")
    c.add_argument("--base", help="a second model to answer every prompt too; 'auto': the model's own base")
    c.add_argument("--system", help="system message")
    c.add_argument("--temperature", type=float, default=0.7, help="0 for greedy (default 0.7)")
    c.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling (default 0.9)")
    c.add_argument("--max-new-tokens", type=int, default=256, help="reply length limit (default 256)")
    c.add_argument("--seed", type=int, help="the same seed gives the same replies")
    c.set_defaults(fn=cmd_chat)
