"""`factory export`: a model you already have (local hub, Hub, a folder) as GGUF files for llama.cpp and Ollama."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = """\
One GGUF file per --gguf type, each with the tokenizer and chat template inside, plus a README card
and an Ollama Modelfile, in --out (default ./<name>-GGUF). Each file is then loaded in llama.cpp
(llama-cpp-python) and answers a prompt; with --text, each file's perplexity on that text is
measured next to the source model's in transformers.

types: f16, bf16, f32, q8_0 (written by the factory itself: `gguf` package; Q8_0 is bit-exact with
       llama.cpp's own) and q4_0, q4_k_m, q5_k_m, q6_k (llama.cpp's quantizer, from the F16 file:
       needs llama-cpp-python, `pip install 'model-factory[gguf]'`)
architectures: Llama (and SmolLM2), Mistral, Qwen2/2.5

examples:
  factory export me/smollm2-tools --gguf q8_0
  factory export ./runs/abc123/merged --gguf f16 --gguf q4_k_m --out ~/models
  factory export me/smollm2-tools --gguf q8_0 --text heldout.txt --publish me/smollm2-tools-GGUF
  ollama create smollm2-tools -f smollm2-tools-GGUF/Modelfile && ollama run smollm2-tools
"""


def cmd_export(args) -> int:
    from transformers.utils import logging as hf_logging

    from factory.base.errors import UserError
    from factory.hub.choose import default_hub, model_folder
    from factory.publish.gguf_export import check_folder, check_types, export

    hf_logging.disable_progress_bar()
    types = check_types(args.gguf or [])
    hub = default_hub()
    folder, revision = model_folder(args.model, hub, args.revision)
    check_folder(folder, types)
    name = args.name or Path(args.model.rstrip("/")).name
    if name in ("merged", ""):
        raise UserError(f"'{args.model}' gives the files no useful name: add --name NAME")
    out = Path(args.out).expanduser() / f"{name}-GGUF" if args.out else Path(f"{name}-GGUF")
    print(f"exporting {args.model}{f' @ {revision[:12]}' if revision else ''} as GGUF {', '.join(t.upper() for t in types)} "
          f"into {out}/")

    def progress(done, total, qtype):
        if qtype:
            print(f"  [{done + 1}/{total}] {qtype.upper()} ...", flush=True)

    files = export(folder, out, types, name, progress)
    measured = check_files(folder, files, args.text)
    from factory.publish.gguf_repo import write_repo_files

    repo_id = args.publish or f"{name}-GGUF"
    model_repo = args.model if not Path(args.model).expanduser().exists() else None
    license = _license(folder)
    write_repo_files(out, folder, {"files": files, "measured": measured}, repo_id, model_repo, None, license)
    from factory.base.sizes import size_text

    for f in files:
        extra = "".join([f", perplexity {f['perplexity']:.3f}" if f.get("perplexity") is not None else "",
                         f", {f['tokens_per_s']:.0f} tokens/s in llama.cpp" if f.get("tokens_per_s") else ""])
        print(f"  {f['file']}: {size_text(f['bytes'])}{extra}")
    if measured.get("merged_perplexity") is not None:
        print(f"  the source model in transformers, same {measured['tokens']:,} tokens: perplexity "
              f"{measured['merged_perplexity']:.3f}")
    print(f"  {out / 'Modelfile'}: ollama create {name} -f {out / 'Modelfile'}")
    if args.publish:
        result = hub.publish(args.publish, out, f"factory export of {args.model}")
        print(f"published {result.repo_id} @ {result.revision[:12]} -> {result.url}"
              + ("" if result.created else " (unchanged; no new revision)"))
    return 0


def check_files(model_dir: Path, files: list[dict], text_file: str | None) -> dict:
    """Each file loaded in llama.cpp, its greedy speed on a short prompt and, with a text, its perplexity."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evals import gguf_runs

    if not gguf_runs.available():
        print("  (llama-cpp-python is not installed: the files were not run in llama.cpp)")
        return {}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer("The capital of France is")["input_ids"]
    ids = []
    if text_file:
        from factory.base.errors import UserError

        path = Path(text_file).expanduser()
        if not path.is_file():
            raise UserError(f"--text {text_file}: no such file")
        chunks = [c for c in path.read_text(encoding="utf-8", errors="replace").split("\n\n") if c.strip()]
        ids = [tokenizer(c)["input_ids"][:512] for c in chunks[:32]]
    for f in files:
        llm = gguf_runs.load(Path(f["path"]), n_ctx=512, logits_all=bool(ids))
        f.update(gguf_runs.generation_speed(llm, prompt, 32))
        if ids:
            f.update(gguf_runs.perplexity(llm, ids))
        llm.close()
    if not ids:
        return {}
    ref = gguf_runs.transformers_perplexity(AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32"), ids)
    return {"texts": len(ids), "which": "given", "tokens": ref["tokens"], "engine": "llama.cpp (llama-cpp-python)",
            "merged_perplexity": ref["perplexity"]}


def _license(folder: Path) -> str | None:
    if not (folder / "README.md").is_file():
        return None
    from huggingface_hub import ModelCard

    return ModelCard.load(folder / "README.md").data.to_dict().get("license")


def add_command(sub) -> None:
    e = sub.add_parser("export", help="a model as GGUF files for llama.cpp, Ollama and LM Studio",
                       epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    e.add_argument("model", help="a local-hub or Hub id (org/name), or a model folder")
    e.add_argument("--gguf", action="append", metavar="TYPE", required=True,
                   help="a quantisation type (repeat for several): q8_0, f16, q4_k_m, ...")
    e.add_argument("--out", metavar="DIR", help="where the <name>-GGUF folder goes (default: here)")
    e.add_argument("--name", help="the files' name (default: the model's name)")
    e.add_argument("--revision", help="a revision of a Hub model")
    e.add_argument("--text", metavar="FILE", help="plain text (paragraphs) to measure each file's perplexity on")
    e.add_argument("--publish", metavar="ORG/NAME-GGUF", help="then publish the folder as this repo")
    e.set_defaults(fn=cmd_export)
