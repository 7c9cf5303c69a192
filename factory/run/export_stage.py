"""The export stage: the merged model as GGUF files, each run in llama.cpp on held-out text, and the
companion repo's folder (files, card, Modelfile) that the publish stage uploads as `<name>-GGUF`."""

from __future__ import annotations

import shutil
from pathlib import Path

from factory.base import atomic, interrupt
from factory.base.progress import Event

PERPLEXITY_TEXTS = 32  # held-out texts each file is scored on
PERPLEXITY_TOKENS = 512  # at most this many tokens of each


def gguf_repo_id(model_repo: str) -> str:
    return f"{model_repo}-GGUF"


def measure_texts(run) -> tuple[list[list[int]], str]:
    """Token ids of up to 32 held-out texts (the eval split, or held-out pairs' chosen answers), else training texts."""
    if run.request.rl:
        from factory.run.pair_stages import load_pairs_file

        _, train, held = load_pairs_file(run)
        chosen = [t.prompt + t.chosen for t in (held or train)[:PERPLEXITY_TEXTS]]
        return chosen, "held-out" if held else "training"
    from factory.data import encoded_store

    _, train, evalset = encoded_store.load(run.dir / "data" / "encoded")
    source, which = (evalset, "held-out") if len(evalset) else (train, "training")
    return [list(source[i].input_ids)[:PERPLEXITY_TOKENS] for i in range(min(PERPLEXITY_TEXTS, len(source)))], which


def stage_export(run, resolved: dict, merged: dict) -> dict:
    req = run.request
    if not req.export.gguf:
        return {"skipped": "export.gguf is empty"}
    from factory.publish.gguf_export import export

    name = (req.hub_model_id or f"local/{run.dir.name}").split("/")[-1]
    folder = run.dir / "gguf"
    shutil.rmtree(folder, ignore_errors=True)  # what an interrupted export left: made again, whole
    folder.mkdir(parents=True)
    types = ", ".join(t.upper() for t in req.export.gguf)
    run.reporter.emit(Event("export", f"writing GGUF {types} from the merged model"))

    def progress(done, total, qtype):
        run.reporter.emit(Event("export", f"GGUF {qtype.upper()}" if qtype else "", step=done, total=total))

    files = export(Path(merged["path"]), folder, req.export.gguf, name, progress)
    measured = measure(run, Path(merged["path"]), files)
    for f in files:
        f.pop("path", None)
        run.reporter.emit(Event("export", f"{f['file']}: {f['bytes'] / 1e6:.1f} MB"
                                + (f", perplexity {f['perplexity']:.3f}" if f.get("perplexity") is not None else "")))
    result = {"folder": str(folder), "files": files, "measured": measured}
    atomic.write_json(run.dir / "export.json", result)
    return result


def measure(run, merged_dir: Path, files: list[dict]) -> dict:
    """Perplexity of each file on the same token ids, in llama.cpp when it is installed (else transformers reading
    the GGUF, which dequantises it), and of the merged model in transformers."""
    from transformers import AutoModelForCausalLM

    from evals import gguf_runs

    ids, which = measure_texts(run)
    if not ids:
        return {}
    engine = "llama.cpp (llama-cpp-python)" if gguf_runs.available() else "transformers (the file dequantised)"
    run.reporter.emit(Event("export", f"perplexity of each file on {len(ids)} {which} texts, in {engine}"))
    for f in files:
        path = Path(f["path"])
        if gguf_runs.available():
            llm = gguf_runs.load(path, n_ctx=PERPLEXITY_TOKENS, logits_all=True)
            f.update(gguf_runs.perplexity(llm, ids))
            llm.close()
        else:
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype="float32")
            f.update(gguf_runs.transformers_perplexity(model, ids, PERPLEXITY_TOKENS))
            del model
        interrupt.safe_point()
    model = AutoModelForCausalLM.from_pretrained(merged_dir, dtype="float32")
    ref = gguf_runs.transformers_perplexity(model, ids, PERPLEXITY_TOKENS)
    return {"texts": len(ids), "which": which, "tokens": ref["tokens"], "engine": engine,
            "merged_perplexity": ref["perplexity"]}


def gguf_folder(run, exported: dict, model_repo: str, model_url: str | None, license: str | None) -> Path:
    """The companion repo's folder: the GGUF files (already there), the card and an Ollama Modelfile."""
    from factory.publish.gguf_repo import write_repo_files

    return write_repo_files(Path(exported["folder"]), run.dir / "merged", exported, gguf_repo_id(model_repo),
                            model_repo, model_url, license)
