"""GGUF files (llama.cpp, Ollama) as bases: dequantised once into a safetensors model folder.

transformers reads GGUF and dequantises it to float32; the folder written here is an ordinary model
(weights, tokenizer, chat template) plus a card naming the source file, its sha256 and its
quantisation, so everything after this step treats it like any other base.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from factory.base import interrupt
from factory.base.errors import UserError
from factory.base.filehash import sha256_of

SOURCE_FILE = "factory_gguf_source.json"  # what the folder was made from; compared to skip a second import


def gguf_facts(path: Path) -> dict:
    """The GGUF header's name, architecture, license and quantisation, without loading any tensor."""
    try:
        import gguf
    except ImportError:
        raise UserError("reading a .gguf file needs the `gguf` package: pip install gguf") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises ValueError/struct.error/... on anything that is not GGUF
        raise UserError(f"{path}: not a readable GGUF file ({type(exc).__name__}: {exc})") from None

    def field(key):
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    file_type = field("general.file_type")
    try:
        quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else "unknown"
    except ValueError:
        quant = f"file type {file_type}"
    arch = field("general.architecture")
    return {"name": field("general.name"), "architecture": arch, "license": field("general.license"),
            "quantisation": quant, "tensors": len(reader.tensors), "context_length": field(f"{arch}.context_length"),
            "has_chat_template": "tokenizer.chat_template" in reader.fields}


def check_gguf_path(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() != ".gguf":
        raise UserError(f"{path}: not a .gguf file; give the path of a GGUF model file")
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    return path.resolve()


def convert(path: Path, dest: Path, digest: str, repo_id: str | None = None) -> dict:
    """Write the dequantised model, its tokenizer and a card into dest (an empty folder). Returns the source facts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_gguf_path(path)
    facts = gguf_facts(path)
    source = {"file": path.name, "sha256": digest, "bytes": path.stat().st_size, **facts}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise UserError(f"{path}: transformers cannot load this GGUF ({facts['architecture']}, {facts['quantisation']}): "
                        f"{exc}") from None
    # The weights are plain float32 now; the GGUF quantisation config only makes save_pretrained refuse.
    model.config.quantization_config = None
    del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = repo_id or path.stem
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    (dest / SOURCE_FILE).write_text(json.dumps(source, indent=1) + "\n")
    (dest / "README.md").write_text(card_text(source, repo_id))
    return source


def card_text(source: dict, repo_id: str | None) -> str:
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(license=source.get("license") or "other", library_name="transformers",
                         pipeline_tag="text-generation", tags=["gguf-dequantised", "model-factory"])
    body = (f"# {repo_id or source['file']}\n\n"
            f"Imported by `factory import` from the GGUF file `{source['file']}` "
            f"({source['bytes']:,} bytes, sha256 `{source['sha256']}`), GGUF name '{source.get('name')}', "
            f"architecture {source.get('architecture')}.\n\n"
            f"The weights were **dequantised from {source['quantisation']}** to float32 by transformers' GGUF loader. "
            "They equal the quantised file's values, not the original unquantised model's: scores can differ "
            "slightly from those published for the original.\n")
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def import_to_hub(path: Path, repo_id: str, hub) -> tuple[str, dict, bool]:
    """Import path as repo_id into the hub, unless the current revision came from the same file.

    Returns (revision, source facts, created)."""
    from factory.base.ids import repo_id_problem

    if problem := repo_id_problem(repo_id):
        raise UserError(f"--as: {problem}")
    path = check_gguf_path(path)
    digest = sha256_of(path)
    if hub.exists(repo_id):
        folder, rev = hub.snapshot(repo_id, "model", files=[SOURCE_FILE])
        marker = folder / SOURCE_FILE
        known = json.loads(marker.read_text()) if marker.is_file() else {}
        if known.get("sha256") == digest:
            return rev, known, False
    with tempfile.TemporaryDirectory(prefix="factory-gguf-") as tmp, interrupt.partial(Path(tmp)):
        source = convert(path, Path(tmp), digest, repo_id)
        interrupt.safe_point()
        published = hub.publish(repo_id, Path(tmp), f"factory import {path.name} (dequantised from {source['quantisation']})")
    return published.revision, source, published.created


def cached_folder(path: Path, cache_root: Path) -> Path:
    """A .gguf named as base_model: its converted folder under cache_root, converted on first use."""
    path = check_gguf_path(path)
    digest = sha256_of(path)
    folder = cache_root / digest
    if (folder / SOURCE_FILE).is_file():
        return folder
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache_root, prefix=".incoming-"))
    try:
        with interrupt.partial(tmp):
            convert(path, tmp, digest)
            interrupt.safe_point()
            tmp.rename(folder)
    except OSError:
        if not (folder / SOURCE_FILE).is_file():  # another process may have won the rename
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
