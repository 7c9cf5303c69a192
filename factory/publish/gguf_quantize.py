"""Q4_0 and the k-quants, made by llama.cpp's own quantizer (`llama_model_quantize`, through llama-cpp-python).

The same function `llama-quantize` calls, fed the F16 file as it usually is; it keeps norms in F32
and picks the per-tensor mixture (Q6_K for the output matrix, ...) each type defines.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from factory.base import interrupt
from factory.base.errors import UserError


def quantize(src: Path, dest: Path, qtype: str, file_type: str) -> dict:
    """dest, whole or not at all: llama.cpp writes a temporary name beside it, renamed when it returns 0.
    file_type: the gguf.LlamaFileType member (MOSTLY_Q4_K_M, ...)."""
    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(gguf.LlamaFileType, file_type))
    params.nthread = os.cpu_count() or 1
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with interrupt.partial(Path(tmp)), stderr_lines() as said:
            rc = llama_cpp.llama_model_quantize(str(src).encode(), tmp.encode(), params)
        if rc != 0:
            raise UserError(f"llama.cpp could not quantize {src.name} to {qtype.upper()} (code {rc}): "
                            + " | ".join(said[-3:]))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fallback = [line for line in said if "falling back" in line]
    return {"type": qtype, "file": dest.name, "path": str(dest), "bytes": dest.stat().st_size, "engine": "llama.cpp",
            "tensor_types": tensor_types(dest), "fallback_tensors": len(fallback)}


@contextlib.contextmanager
def stderr_lines():
    """What llama.cpp writes to the process's stderr meanwhile, as a list of lines, instead of on the terminal
    (its quantizer prints a line for every tensor whose rows do not fit the type's blocks)."""
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as f:
        os.dup2(f.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            f.seek(0)
            lines += f.read().decode(errors="replace").splitlines()


def tensor_types(path: Path) -> dict[str, int]:
    import gguf

    counts: dict[str, int] = {}
    for t in gguf.GGUFReader(str(path)).tensors:
        counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
    return counts
