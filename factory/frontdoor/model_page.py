"""A model in the local hub as a web page shows it: its card, its files, where it is and how to load it.

Offline, a published model lives in a folder of this machine; a `file://` link is refused by browsers
and the card's `from_pretrained("owner/name")` names a repo that huggingface.co does not have. The page
is read as the signed-in user (a private repo is its owner's alone, as on the Hub).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.base.errors import UserError
from factory.hub.local import COMMIT_FILE, MANIFEST, LocalHub

HIDDEN = {COMMIT_FILE, MANIFEST}  # the local hub's own bookkeeping, not the model's files


@dataclass(frozen=True)
class ModelPage:
    repo_id: str
    revision: str
    folder: Path
    card: str  # the card's markdown without its metadata block
    files: list[tuple[str, int]]  # (path in the repo, bytes)

    def snippet(self, folder: str) -> str:
        """How to load it, naming its folder as `folder` (the path itself, or $FACTORY_HOME/... for a stranger)."""
        return ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'folder = "{folder}"  # in this factory\'s local hub, not on huggingface.co\n'
                "model = AutoModelForCausalLM.from_pretrained(folder)\n"
                "tokenizer = AutoTokenizer.from_pretrained(folder)\n```\n"
                f"To share it on huggingface.co: `hf upload {self.repo_id} {folder}` (or run the factory "
                "with HF_TOKEN set, and it publishes there).")


def local_model(hub: LocalHub, repo_id: str) -> ModelPage:
    """The newest revision of a model repo the hub's reader may see, or a UserError saying it is not there."""
    folder, revision = hub.snapshot(repo_id, "model")
    files = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")
                   if p.is_file() and p.name not in HIDDEN)
    card = folder / "README.md"
    body = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
    if body.startswith("---"):
        body = body.split("---", 2)[-1]
    return ModelPage(repo_id, revision, folder, body.strip() or "(this repo has no model card)", files)


def download_copy(page: ModelPage, name: str) -> Path:
    """One of the page's files, copied where the web app may hand it out (it serves no other folder)."""
    if name not in {f for f, _ in page.files}:
        raise UserError(f"'{name}' is not a file of {page.repo_id}")
    out = Path(tempfile.mkdtemp(prefix="factory-model-page-")) / Path(name).name
    shutil.copyfile(page.folder / name, out)
    return out


