"""`factory demo --dpo`: DPO of the real SmolLM2-135M-Instruct on HH-RLHF's harmless pairs (examples/smollm2-135m-dpo.yaml).

The pairs are Anthropic's hh-rlhf harmless-base test file from the shared data folder, published into the local
hub as factory/hh-rlhf-harmless; 100 of the first 420 are held out (seeded) and scored before and after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from factory.demo.demo_real import shared_data

DATASET_ID = "factory/hh-rlhf-harmless"
PAIRS = "preference/hh_rlhf_harmless_base_test.jsonl.gz"
REQUEST = Path(__file__).resolve().parents[2] / "examples" / "smollm2-135m-dpo.yaml"
WHAT_IT_SHOWS = """
What this shows: DPO moves a real model's preferences on pairs it never saw: the held-out table above is how often
SmolLM2-135M-Instruct gives the chosen (harmless) answer a higher reward than the rejected one, before and after,
with standard errors, and whether both answers' log-probs fell (a known DPO failure). arc_easy on the same 200 items
for both models says whether general ability was damaged. 100 held-out pairs cannot show small changes: read the
± column."""


def ensure_assets(hub, say=print) -> None:
    """The real base in the local hub and the harmless pairs as a local-hub dataset."""
    from factory.demo.real_model import ensure

    ensure(hub, say)
    source = shared_data(PAIRS)
    os.environ.setdefault("FACTORY_BENCHMARKS_DIR", str(source.parents[1] / "benchmarks"))  # arc_easy, offline
    if not hub.exists(DATASET_ID, "dataset"):
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copyfile(source, Path(tmp) / "train.jsonl.gz")
            (Path(tmp) / "README.md").write_text(
                "---\nlicense: mit\n---\n# HH-RLHF harmless-base pairs\n\nThe test file of Anthropic's hh-rlhf "
                "harmless-base (MIT): chosen and rejected transcripts of the same conversation.\n")
            hub.publish(DATASET_ID, Path(tmp), "factory demo --dpo: hh-rlhf harmless pairs", repo_type="dataset")
        say(f"wrote the harmless pairs as dataset {DATASET_ID} into the local hub")
