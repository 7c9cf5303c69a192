"""A merged model folder (safetensors + tokenizer) as one GGUF file per quantisation type.

F32/F16/BF16/Q8_0 are written here with the `gguf` package (Q8_0 bit-exact with ggml's own); the
other types (Q4_0 and the k-quants) are made from the F16 file by llama.cpp's quantizer
(`gguf_quantize`), as `llama-quantize` makes them. Tensor names follow gguf's own map; Llama's q/k
rows are permuted to the rotary layout llama.cpp's llama graph expects (Qwen2's are not), as
llama.cpp's convert_hf_to_gguf.py does.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from factory.base import interrupt
from factory.base.errors import UserError
from factory.request.config import GGUF_TYPES, ExportSpec

# HF architecture -> (GGUF architecture, permute q/k for llama.cpp's interleaved rope)
ARCHITECTURES = {"LlamaForCausalLM": ("llama", True), "MistralForCausalLM": ("llama", True),
                 "Qwen2ForCausalLM": ("qwen2", False)}


@dataclass(frozen=True)
class GgufType:
    name: str  # as requested and in file names (upper case there): q8_0
    file_type: str  # gguf.LlamaFileType member
    engine: str  # "gguf" (Python, here) or "llama.cpp" (its quantizer, from the F16 file)
    about: str


TYPES = {t.name: t for t in (
    GgufType("f32", "ALL_F32", "gguf", "32-bit floats: the weights as trained, 4 bytes each"),
    GgufType("f16", "MOSTLY_F16", "gguf", "16-bit floats: no quantisation loss to speak of, 2 bytes a weight"),
    GgufType("bf16", "MOSTLY_BF16", "gguf", "bfloat16, as most models are trained; 2 bytes a weight"),
    GgufType("q8_0", "MOSTLY_Q8_0", "gguf", "8-bit blocks of 32: about 1.06 bytes a weight, near-lossless"),
    GgufType("q4_0", "MOSTLY_Q4_0", "llama.cpp", "4-bit blocks of 32: the oldest small type"),
    GgufType("q4_k_m", "MOSTLY_Q4_K_M", "llama.cpp", "4-bit k-quant, medium: the usual laptop choice"),
    GgufType("q5_k_m", "MOSTLY_Q5_K_M", "llama.cpp", "5-bit k-quant, medium: closer to F16, a little larger"),
    GgufType("q6_k", "MOSTLY_Q6_K", "llama.cpp", "6-bit k-quant: close to Q8_0 at three quarters of its size"),
)}


assert tuple(TYPES) == GGUF_TYPES  # the request's vocabulary is this table's


def check_types(types: list[str]) -> list[str]:
    """The requested types, lower-cased, each once, in order; or a UserError naming the unknown one."""
    try:
        out = ExportSpec(gguf=types).gguf
    except ValidationError as exc:
        raise UserError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if not out:
        raise UserError("no GGUF type given: name at least one (q8_0 is near-lossless; q4_k_m is small)")
    return out


def needs_llama_cpp(types: list[str]) -> list[str]:
    return [t for t in types if TYPES[t].engine == "llama.cpp"]


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def check_engine(types: list[str]) -> None:
    """A type that needs llama.cpp's quantizer is refused where llama-cpp-python is not installed."""
    missing = needs_llama_cpp(types)
    if missing and not llama_cpp_available():
        raise UserError(f"GGUF {', '.join(missing)} is made by llama.cpp's quantizer, and llama-cpp-python is not "
                        "installed here: pip install 'model-factory[gguf]' (it compiles llama.cpp, a few minutes), "
                        "or ask for f16, bf16 or q8_0, which the factory writes itself")


def check_model(config: dict, where: str = "the model") -> str:
    """The GGUF architecture for a config.json, or a UserError naming the architecture that cannot be exported."""
    archs = config.get("architectures") or []
    arch = archs[0] if archs else config.get("model_type", "unknown")
    if arch not in ARCHITECTURES:
        raise UserError(f"GGUF export: {where} is a {arch}, which the factory cannot export yet "
                        f"(it can: {', '.join(sorted(ARCHITECTURES))}); drop export.gguf from the request")
    kind = rope_settings(config).get("rope_type")
    if kind not in (None, "default", "llama3", "linear"):
        raise UserError(f"GGUF export: {where} uses {kind} rope scaling, which the factory does not export yet")
    return ARCHITECTURES[arch][0]


def check_folder(model_dir: Path, types: list[str]) -> None:
    """Everything export() would refuse, from the folder's JSON files alone (no weights read)."""
    from factory.publish.gguf_vocab import tokenizer_json, tokenizer_kind

    check_engine(check_types(types))
    model_dir = Path(model_dir)
    check_model(json.loads((model_dir / "config.json").read_text()), str(model_dir))
    tokenizer_kind(tokenizer_json(model_dir))


def file_name(name: str, qtype: str) -> str:
    return f"{name}-{qtype.upper()}.gguf"


def export(model_dir: Path, out_dir: Path, types: list[str], name: str,
           progress: Callable[[int, int, str], None] | None = None) -> list[dict]:
    """Write out_dir/<name>-<TYPE>.gguf for each type; each file appears whole or not at all."""
    types = check_types(types)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    check_folder(model_dir, types)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    f16_path: Path | None = None
    scratch = None
    try:
        for done, qtype in enumerate(types):
            if progress:
                progress(done, len(types), qtype)
            dest = out_dir / file_name(name, qtype)
            if TYPES[qtype].engine == "gguf":
                info = write_gguf(model_dir, dest, qtype, name)
                if qtype == "f16":
                    f16_path = dest
            else:
                from factory.publish.gguf_quantize import quantize

                if f16_path is None:  # the quantizer's input, as llama-quantize is fed: the F16 file
                    scratch = tempfile.TemporaryDirectory(dir=out_dir, prefix=".f16-")
                    f16_path = Path(scratch.name) / file_name(name, "f16")
                    write_gguf(model_dir, f16_path, "f16", name)
                info = quantize(f16_path, dest, qtype, TYPES[qtype].file_type)
            results.append(info)
            interrupt.safe_point()
    finally:
        if scratch is not None:
            scratch.cleanup()
    if progress:
        progress(len(types), len(types), "")
    return results


def write_gguf(model_dir: Path, dest: Path, qtype: str, name: str) -> dict:
    """One GGUF file with the Python engine (f32, f16, bf16, q8_0)."""
    import gguf
    from transformers import AutoTokenizer

    from factory.publish.gguf_vocab import add_vocab

    config = json.loads((Path(model_dir) / "config.json").read_text())
    arch = check_model(config, str(model_dir))
    file_type = getattr(gguf.LlamaFileType, TYPES[qtype].file_type)
    writer = gguf.GGUFWriter(path=None, arch=arch, use_temp_file=True)  # tensors wait on disk, not in memory
    writer.add_name(name)
    writer.add_file_type(int(file_type))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_hparams(writer, config)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = add_vocab(writer, Path(model_dir), config["vocab_size"], tokenizer.chat_template)
    counts: dict[str, int] = {}
    for gguf_name, data, tensor_type in tensors(model_dir, config, arch, file_type):
        writer.add_tensor(gguf_name, gguf.quants.quantize(data, tensor_type), raw_dtype=tensor_type)
        counts[tensor_type.name] = counts.get(tensor_type.name, 0) + 1
    _write_whole(writer, dest)
    return {"type": qtype, "file": dest.name, "path": str(dest), "bytes": dest.stat().st_size, "engine": "gguf",
            "tensor_types": counts, **vocab}


def _write_whole(writer, dest: Path) -> None:
    """The file is written under a temporary name beside dest and renamed when complete."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with interrupt.partial(Path(tmp)):
            writer.write_header_to_file(path=Path(tmp))
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file(progress=False)
            writer.close()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would keep the file from other readers of the hub
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def add_hparams(writer, c: dict) -> None:
    """The model shape and rope settings llama.cpp reads (its converter's keys for Llama and Qwen2)."""
    import gguf

    heads = c["num_attention_heads"]
    head_dim = c.get("head_dim") or c["hidden_size"] // heads
    writer.add_context_length(c.get("max_position_embeddings", 2048))
    writer.add_embedding_length(c["hidden_size"])
    writer.add_feed_forward_length(c["intermediate_size"])
    writer.add_block_count(c["num_hidden_layers"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(c.get("num_key_value_heads") or heads)
    writer.add_layer_norm_rms_eps(c.get("rms_norm_eps", 1e-6))
    writer.add_rope_freq_base(rope_theta(c))
    writer.add_vocab_size(c["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != c["hidden_size"] // heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    rope = rope_settings(c)
    if rope.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(rope["factor"])


def rope_settings(c: dict) -> dict:
    """Rope type, theta and scaling: transformers 5 writes `rope_parameters`, 4.x `rope_scaling` + `rope_theta`."""
    rope = dict(c.get("rope_parameters") or c.get("rope_scaling") or {})
    if "type" in rope and "rope_type" not in rope:
        rope["rope_type"] = rope["type"]
    rope.setdefault("rope_theta", c.get("rope_theta", 10000.0))
    return rope


def rope_theta(c: dict) -> float:
    return float(rope_settings(c)["rope_theta"])


def tensors(model_dir: Path, config: dict, arch: str, file_type):
    """(gguf name, float32 array, ggml type) for every tensor llama.cpp needs, read one at a time."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    n_layers = config["num_hidden_layers"]
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), n_layers)
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    permute = ARCHITECTURES[config["architectures"][0]][1]
    if rope_settings(config).get("rope_type") == "llama3":
        yield "rope_freqs.weight", llama3_rope_factors(config), gguf.GGMLQuantizationType.F32
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise UserError(f"{model_dir}: no .safetensors weights to export")
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for hf_name in f.keys():
                if hf_name.endswith("rotary_emb.inv_freq"):
                    continue
                if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
                    continue  # llama.cpp reuses token_embd when output.weight is absent
                gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
                if gguf_name is None:
                    raise UserError(f"GGUF export: no llama.cpp name for tensor {hf_name}")
                t = f.get_tensor(hf_name).float()
                if permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                    t = permute_rope(t, heads, heads)
                elif permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                    t = permute_rope(t, heads, kv_heads)
                data = t.numpy().astype(np.float32)
                yield gguf_name, data, tensor_type(gguf_name, data, file_type)


def tensor_type(gguf_name: str, data, file_type):
    """Norms and biases stay F32 (as llama.cpp's converter keeps them); matrices take the file's type."""
    import gguf

    T, F = gguf.GGMLQuantizationType, gguf.LlamaFileType
    if data.ndim <= 1 or gguf_name.endswith("_norm.weight") or file_type == F.ALL_F32:
        return T.F32
    want = {F.MOSTLY_F16: T.F16, F.MOSTLY_BF16: T.BF16, F.MOSTLY_Q8_0: T.Q8_0}[file_type]
    if want == T.Q8_0 and data.shape[-1] % 32:
        return T.F16  # Q8_0 blocks are 32 wide along a row: a row that does not divide stays F16
    return want


def permute_rope(w, n_head: int, n_head_kv: int):
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf.py LlamaModel.permute)."""
    if n_head_kv != n_head:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(c: dict):
    """Llama 3.1's long-context frequency factors as the rope_freqs tensor llama.cpp reads."""
    import numpy as np

    rope = rope_settings(c)
    dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    base = rope_theta(c)
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), rope.get("high_freq_factor", 4.0)
    old = rope.get("original_max_position_embeddings", 8192)
    out = []
    for i in range(0, dim, 2):
        wavelen = 2 * math.pi * base ** (i / dim)
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)
