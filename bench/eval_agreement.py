"""`factory eval` against lm-eval's own command line on the real SmolLM2-135M-Instruct, and against published figures.

    .venv/bin/python bench/eval_agreement.py [--limit 200] [--task arc_easy --task winogrande]

Both score the same model folder (the imported real model), the same seeded item subset (written by
`factory eval --export-tasks` as samples.json and passed to `lm_eval --samples`), the same task files,
seeds, batch size and chat template. The agreement is checked to the last digit. The published
figure is a full-test-set score from another setup: the difference is explained in the README.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACTORY_SHARED_DATA", ROOT.parent / "shared" / "data"))
# Published scores for SmolLM2-135M-Instruct with lm-eval, 0-shot, full test sets: the "Baseline" column of
# the model card of lldois/SmolLM2-135M-Reasoning-SLERP-Champion (third-party; the official SmolLM2 card
# reports lighteval figures with other prompts and an "ARC (average)" only). None found for WinoGrande.
PUBLISHED = {"arc_easy": (0.5412, "lm-eval 0-shot acc, full ARC-Easy test (2,376 items), lldois/SmolLM2-135M-"
                                   "Reasoning-SLERP-Champion card, 'Baseline' column")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--task", action="append", default=None)
    args = ap.parse_args()
    tasks = args.task or ["arc_easy", "winogrande"]
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("FACTORY_BENCHMARKS_DIR", str(SHARED / "benchmarks"))
    from evals.harness import lm_eval_command
    from factory.cli.main import main as factory_main
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub
    from factory.demo.real_model import REPO_ID, ensure

    hub = LocalHub(hub_root())
    if not hub.exists(REPO_ID):
        ensure(hub)
    folder = hub.snapshot(REPO_ID)[0]
    work = Path(tempfile.mkdtemp(prefix="eval-agreement-"))
    print(f"machine: {platform.node()}, {os.cpu_count()} cores; model: {REPO_ID} (dequantised Q4_1) at {folder}")
    flags = [x for t in tasks for x in ("--task", t)]
    t = time.time()
    if factory_main(["eval", str(folder), *flags, "--limit", str(args.limit), "--json", str(work / "ours.json"),
                     "--export-tasks", str(work / "tasks")]) != 0:
        raise SystemExit("factory eval failed")
    ours_s = time.time() - t
    cmd = lm_eval_command(folder, tasks, work / "tasks", work / "tasks" / "samples.json", output=work / "lm_eval")
    cmd[0] = str(Path(sys.executable).parent / "lm_eval")
    print("lm-eval command line: " + " ".join(cmd))
    t = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    theirs_s = time.time() - t
    if done.returncode != 0:
        raise SystemExit(f"lm_eval failed:\n{done.stderr[-3000:]}")
    theirs = json.loads(next((work / "lm_eval").rglob("results_*.json")).read_text())["results"]
    ours = json.loads((work / "ours.json").read_text())
    print(f"\n{'task':12} {'items':>5} {'factory eval':>14} {'lm_eval CLI':>14} {'equal':>6}   published (full test set)")
    for task in tasks:
        mine = ours[task]["model"]
        key = f"{mine['metric']},none"
        other = theirs[task][key]
        pub = PUBLISHED.get(task)
        print(f"{task:12} {mine['n']:>5} {mine['value']:>14.10f} {other:>14.10f} {str(mine['value'] == other):>6}   "
              + (f"{pub[0]:.4f} ({pub[1]})" if pub else "none found"))
    print(f"\nwall: factory eval {ours_s:.0f}s (in process, model loaded once), lm_eval {theirs_s:.0f}s (its own process)")


if __name__ == "__main__":
    main()
