"""The card of the companion `<name>-GGUF` repo: what each file is, how big, how close to F16, how to run it."""

from __future__ import annotations

from factory.base.sizes import size_text
from factory.publish.gguf_export import TYPES


def build_gguf_card(repo_id: str, model_repo: str | None, model_url: str | None, export: dict,
                    license: str | None, has_modelfile: bool) -> str:
    """export: the export stage's result (files with type, size, perplexity; the texts it was measured on)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(base_model=model_repo, base_model_relation="quantized" if model_repo else None,
                         license=license, tags=["gguf", "llama.cpp", "ollama", "model-factory"],
                         pipeline_tag="text-generation")
    files = export["files"]
    measured = export.get("measured") or {}
    first = next((f for f in files if f["type"] == "q8_0"), files[0])
    tag = first["type"].upper()
    online = model_url and model_url.startswith("https://")  # a local hub's file:// path is no one else's
    source = f"[{model_repo}]({model_url})" if model_repo and online else (f"`{model_repo}`" if model_repo
                                                                          else "the merged model")
    lines = [f"# {repo_id.split('/')[-1]}", "",
             f"GGUF files of {source}, for llama.cpp, Ollama, LM Studio and Jan. Written by the factory when it "
             "published that model: one file per quantisation type, each with the tokenizer and the chat template "
             "inside.", "", "## Files", ""]
    ppl_head = "perplexity" if measured.get("tokens") else "perplexity (not measured)"
    lines += [f"| file | type | size | {ppl_head} | what it is |", "|---|---|---|---|---|"]
    for f in files:
        ppl = f.get("perplexity")
        lines.append(f"| `{f['file']}` | {f['type'].upper()} | {size_text(f['bytes'])} | "
                     f"{f'{ppl:.3f}' if ppl is not None else '—'} | {TYPES[f['type']].about} |")
    if measured.get("tokens"):
        ref = measured.get("merged_perplexity")
        lines += ["", f"Perplexity: on {measured['texts']} {measured['which']} texts ({measured['tokens']:,} tokens), "
                      f"each file run by {measured['engine']}; lower is better, and a quantised file close to F16's "
                      "lost little."
                  + (f" The merged model in transformers, same tokens: {ref:.3f}." if ref is not None else "")]
    lines += ["", "## Run it", "",
              "Ollama (from the Hub):", "", "```bash", f"ollama run hf.co/{repo_id}:{tag}", "```", "",
              "llama.cpp:", "", "```bash", f'llama-cli -hf {repo_id}:{tag} -p "Hello"', "```", ""]
    if has_modelfile:
        lines += [f"Ollama from a downloaded file: `Modelfile` in this repo names `{first['file']}` and carries the chat "
                  "template and stop tokens: put both in one folder, then `ollama create my-model -f Modelfile` and "
                  "`ollama run my-model`.", ""]
    lines += ["LM Studio and Jan: search for this repo's name in their model browser, or load a downloaded file.", "",
              "## How the files were made", ""]
    for f in files:
        how = ("written by the factory with the `gguf` package" if f["engine"] == "gguf"
               else "quantised from the F16 file by llama.cpp's own quantizer (llama-cpp-python)")
        mix = ", ".join(f"{n} {k}" for k, n in sorted(f.get("tensor_types", {}).items()))
        fell = (f"; {f['fallback_tensors']} matrices whose rows do not divide into the type's 256-wide blocks fell back "
                "to an older type (llama.cpp's rule)") if f.get("fallback_tensors") else ""
        lines.append(f"- `{f['file']}`: {how}; tensors: {mix}{fell}")
    return ModelCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n").content
