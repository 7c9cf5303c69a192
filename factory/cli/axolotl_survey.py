"""`factory validate` over a folder of Axolotl configs: which validate, which are refused and why, by capability.

Used by tests/test_axolotl.py (over ../shared/data/axolotl_examples) and `python -m factory.axolotl_survey [DIR]`.
A config is "text-only SFT" when it asks for no preference/reward training, no vision or audio model,
no pretraining stream and no diffusion: judged from its own keys, not from the factory's answer.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from factory.request.axolotl_keys import VERSION as AXOLOTL_VERSION

PREFERENCE_TYPES = ("bradley_terry", "ultra", "argilla", "rwd.", "ebft", "stepwise")


def text_only_sft(config: dict) -> bool:
    if any(config.get(k) for k in ("rl", "reward_model", "process_reward_model", "diffusion", "ebft",
                                   "processor_type", "pretraining_dataset")):
        return False
    if str(config.get("model_type") or "").endswith("ForConditionalGeneration"):
        return False
    for ds in config.get("datasets") or []:
        ds = ds if isinstance(ds, dict) else {}
        if any(x in str(ds.get("type")) for x in PREFERENCE_TYPES) or "field_chosen" in ds:
            return False
    return True


@dataclass
class Survey:
    total: int = 0
    valid: int = 0
    sft_total: int = 0
    sft_valid: int = 0
    crashed: list[str] = field(default_factory=list)
    refusals: Counter = field(default_factory=Counter)  # reason -> configs
    sft_refusals: Counter = field(default_factory=Counter)  # reason -> text-only SFT configs

    def table(self) -> str:
        """The rates, then one line per capability (and per schema problem): configs refused for it, their share
        of all configs, and how many of them are text-only SFT. A config refused for two is counted under both."""
        lines = [f"validate: {self.valid} of {self.total} configs ({self.valid / max(self.total, 1):.1%}); text-only SFT: "
                 f"{self.sft_valid} of {self.sft_total} ({self.sft_valid / max(self.sft_total, 1):.1%})",
                 "refused, by capability:        configs  share  text-only SFT"]
        capabilities = [(r, n) for r, n in self.refusals.most_common() if not r.startswith("`")]
        schema = [(r, n) for r, n in self.refusals.most_common() if r.startswith("`")]
        lines += [f"  {n:3}  {n / max(self.total, 1):6.1%}  {self.sft_refusals[r]:3}  {r}" for r, n in capabilities]
        if schema:
            lines.append("not valid as written (placeholders, missing keys):")
            lines += [f"  {n:3}  {r}" for r, n in schema]
        return "\n".join(lines)

    def by_capability(self) -> dict[str, int]:
        return {r: n for r, n in self.refusals.items() if not r.startswith("`")}


def reasons(message: str) -> list[str]:
    """One reason per capability or schema problem, without the file and line."""
    out = []
    for line in message.splitlines()[1:] or message.splitlines():
        line = re.sub(r"^\S+?:\d+: |^\S+?: ", "", line.strip())
        line = re.sub(r" \(.*\)$", "", line) if not line.startswith("`") else re.sub(r"\(got .*\)$", "", line)
        out.append(line[:140])
    return out


def survey(folder: Path) -> Survey:
    import yaml

    from factory.cli.main import main

    result = Survey()
    for path in sorted(p for p in Path(folder).iterdir() if p.suffix in (".yml", ".yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        sft = isinstance(config, dict) and text_only_sft(config)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(["validate", "--offline", str(path)])
            except Exception as exc:  # noqa: BLE001 - a crash is what this survey looks for
                code = f"crash: {type(exc).__name__}: {exc}"
        result.total += 1
        result.sft_total += sft
        if code == 0:
            result.valid += 1
            result.sft_valid += sft
        elif code == 2 and "Traceback" not in err.getvalue():
            for reason in set(reasons(err.getvalue().removeprefix("error: "))):
                result.refusals[reason] += 1
                result.sft_refusals[reason] += sft
        else:
            result.crashed.append(f"{path.name}: {code} {err.getvalue()[-300:]}")
    return result


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parents[3] / "shared" / "data" / "axolotl_examples"
    if not folder.is_dir():
        print(f"no folder {folder}: give a folder of Axolotl configs (python -m factory.axolotl_survey DIR)",
              file=sys.stderr)
        return 2
    print(f"{folder} (Axolotl keys known: {AXOLOTL_VERSION})")
    print(survey(folder).table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
