"""The Hugging Face Jobs cost estimate that `factory validate --flavor` prints, for the demo request and for
examples/qlora-llama3-8b-alpaca.yaml, on the flavors of a price list.

    FACTORY_JOBS_PRICES=prices.json .venv/bin/python bench/jobs_cost.py --flavor t4-small --flavor t4-medium

Prices: FACTORY_JOBS_PRICES (a saved `list_jobs_hardware` answer), else the Hub's live list. The demo's tokens
and parameters come from its data and base in the local hub (`factory demo` makes them). The QLoRA example's
dataset, yahma/alpaca-cleaned, cannot be read offline: its bytes are estimated as its 51,760 rows times the mean
bytes of a row of the shared Alpaca file (llamafactory_alpaca_en_demo.json, as JSON lines), and its parameters
come from its name (8B). Everything else is the factory's own estimator (factory/queue/compute.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ALPACA_CLEANED_ROWS = 51_760  # the row count on yahma/alpaca-cleaned's dataset card


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flavor", action="append", required=True)
    ap.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    args = ap.parse_args()

    from factory.demo import demo
    from factory.queue.compute import estimate, hardware, parameters
    from factory.request.config import load_request
    from factory.base.home import hub_root
    from factory.hub.local import LocalHub
    from factory.hub.choose import model_folder
    from factory.base.progress import Silent
    from factory.admission.remote_policy import estimated_tokens

    flavors, prices = hardware()
    print(f"machine: {platform.node()} ({platform.machine()}); {prices}")
    hub = LocalHub(hub_root())
    demo.ensure_assets(hub, Silent())
    req = load_request(demo.REQUEST)
    base = model_folder(req.base_model, hub)[0]
    rows = [("demo (examples/demo.yaml)", req, estimated_tokens(req, hub), parameters(req, base), "local hub")]

    qlora = load_request(ROOT / "examples" / "qlora-llama3-8b-alpaca.yaml")
    sample = json.loads((Path(args.shared) / "sft_alpaca" / "llamafactory_alpaca_en_demo.json").read_text())
    per_row = sum(len(json.dumps(r, ensure_ascii=False).encode()) + 1 for r in sample) / len(sample)
    tokens = int(per_row * ALPACA_CLEANED_ROWS / 4 * qlora.num_epochs)  # estimated_tokens' rule: bytes / 4 x epochs
    rows.append(("qlora-llama3-8b-alpaca", qlora, tokens, parameters(qlora),
                 f"{ALPACA_CLEANED_ROWS:,} rows x {per_row:.0f} bytes (shared Alpaca sample)"))
    for name, request, n_tokens, params, source in rows:
        print(f"\n{name}: {n_tokens:,} training tokens ({source})")
        for flavor in args.flavor:
            print("  " + estimate(request, flavors[flavor], n_tokens, params, prices).line())


if __name__ == "__main__":
    main()
