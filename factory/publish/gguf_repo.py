"""The companion `<name>-GGUF` repo's folder: the GGUF files (already written there), its card, an Ollama Modelfile."""

from __future__ import annotations

import json
from pathlib import Path

from factory.base import atomic


def write_repo_files(folder: Path, model_dir: Path, exported: dict, repo_id: str, model_repo: str | None,
                     model_url: str | None, license: str | None) -> Path:
    from transformers import AutoTokenizer

    from factory.base.redact import redact
    from factory.publish.gguf_card import build_gguf_card
    from factory.publish.ollama_modelfile import modelfile, role_template, stop_tokens

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    template = None
    if tokenizer.chat_template:
        template = role_template(lambda m, g: tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=g))
    first = next((f for f in exported["files"] if f["type"] == "q8_0"), exported["files"][0])
    atomic.write_text(folder / "Modelfile", modelfile(first["file"], template, stop_tokens(template, tokenizer.eos_token)))
    card = build_gguf_card(repo_id, model_repo, model_url, exported, license, has_modelfile=True)
    atomic.write_text(folder / "README.md", redact(card))
    files = [{k: v for k, v in f.items() if k != "path"} for f in exported["files"]]
    atomic.write_text(folder / "factory_export.json", json.dumps(files, indent=1) + "\n")
    return folder
