"""Hugging Face Jobs hardware for a request: its flavor and timeout, each flavor's GPUs and price, and an
estimate of a run's time and cost.

Prices come from the Hub (`list_jobs_hardware`), cached a day in $FACTORY_HOME/cache/jobs-hardware.json;
FACTORY_JOBS_PRICES names a file in the same format for a machine that cannot reach the Hub. The time
estimate is arithmetic, printed with its assumptions: training FLOPs (6 x parameters per token for a full
finetune, 4 x for LoRA, +2 x with gradient checkpointing) over the GPUs' peak bf16 throughput at an assumed
utilisation, plus a fixed start-up, merge, eval and upload overhead.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from factory.base.errors import UserError
from factory.request.durations import timeout_seconds

DEFAULT_FLAVOR = "a10g-small"
DEFAULT_TIMEOUT = "6h"
CACHE_DAYS = 1
# Peak dense bf16 (T4: fp16) tensor throughput per GPU in TFLOP/s, from NVIDIA's datasheets.
PEAK_TFLOPS = {"T4": 65, "A10G": 125, "L4": 121, "L40S": 362, "A100": 312, "H100": 989, "H200": 989}
UTILISATION = 0.35  # of peak, for a packed LoRA/full finetune; QLoRA's dequantisation halves it again
OVERHEAD_MIN = 6.0  # image start, model download and load, merge, eval, upload (more for big models, below)


@dataclass(frozen=True)
class Flavor:
    name: str
    gpu: str | None  # the accelerator's model ("A10G"), None for CPU flavors
    gpus: int
    usd_per_min: float
    pretty: str = ""

    @property
    def hardware(self) -> str:
        return f"{self.gpus}x {self.gpu}" if self.gpu else "CPU"


def _flavor(raw: dict) -> Flavor:
    acc = raw.get("accelerator") or None
    per = {"second": 60.0, "minute": 1.0, "hour": 1 / 60}.get(str(raw.get("unitLabel", "minute")), 1.0)
    usd = raw.get("unitCostUSD")
    usd = float(usd) if usd is not None else float(raw.get("unitCostMicroUSD", 0)) / 1e6
    return Flavor(raw["name"], acc["model"] if acc else None, int(acc["quantity"]) if acc else 0, usd * per,
                  raw.get("prettyName", raw["name"]))


def _by_name(raw: list[dict]) -> dict[str, Flavor]:
    return {f.name: f for f in map(_flavor, raw)}


def _raw(hw) -> dict:
    """A `JobHardwareInfo` back in the route's own JSON shape (what the cache and FACTORY_JOBS_PRICES hold)."""
    acc = hw.accelerator
    return {"name": hw.name, "prettyName": hw.pretty_name, "cpu": hw.cpu, "ram": hw.ram,
            "accelerator": None if acc is None else {"type": acc.type, "model": acc.model, "quantity": acc.quantity,
                                                     "vram": acc.vram, "manufacturer": acc.manufacturer},
            "unitCostMicroUSD": hw.unit_cost_micro_usd, "unitCostUSD": hw.unit_cost_usd, "unitLabel": hw.unit_label}


def _cache_path():
    from factory.base.home import factory_home

    return factory_home() / "cache" / "jobs-hardware.json"


def hardware(endpoint: str | None = None, token: str | None = None) -> tuple[dict[str, Flavor], str]:
    """Every Jobs flavor by name, and where its prices came from (shown next to any estimate)."""
    from factory.base import atomic

    if os.environ.get("FACTORY_JOBS_PRICES"):
        path = os.environ["FACTORY_JOBS_PRICES"]
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"FACTORY_JOBS_PRICES={path}: cannot be read as list_jobs_hardware JSON ({exc})") from None
        return _by_name(raw), f"prices from FACTORY_JOBS_PRICES ({os.path.basename(path)})"
    from factory.hub.credentials import check_endpoint, hf_token

    endpoint = check_endpoint(endpoint)
    if token is None and (operator := hf_token(endpoint)) is not None:
        token = operator.value
    cache = _cache_path()
    cached = json.loads(cache.read_text()) if cache.is_file() else None
    now = datetime.now(timezone.utc)
    if cached and cached.get("endpoint") == endpoint:
        age = now - datetime.fromisoformat(cached["fetched"])
        if age < timedelta(days=CACHE_DAYS):
            return _by_name(cached["flavors"]), f"prices from {endpoint}, {cached['fetched'][:16]} UTC"
    try:
        from huggingface_hub import HfApi

        raw = [_raw(hw) for hw in HfApi(endpoint=endpoint, token=token or False).list_jobs_hardware()]
    except Exception as exc:  # noqa: BLE001 - offline, refused, or down: fall back to the cache
        if cached and cached.get("endpoint") == endpoint:
            return (_by_name(cached["flavors"]),
                    f"prices from {endpoint}, cached {cached['fetched'][:16]} UTC (refresh failed: {type(exc).__name__})")
        raise UserError(f"the Jobs prices cannot be read from {endpoint} ({type(exc).__name__}); "
                        "connect once, or set FACTORY_JOBS_PRICES to a saved list_jobs_hardware JSON") from None
    atomic.write_json(cache, {"endpoint": endpoint, "fetched": now.isoformat(), "flavors": raw})
    return _by_name(raw), f"prices from {endpoint}, {now.isoformat()[:16]} UTC"


# ---- the operator's choice and bounds ------------------------------------------------------------

def default_flavor() -> str:
    return os.environ.get("FACTORY_JOBS_FLAVOR", DEFAULT_FLAVOR)


def chosen(request) -> tuple[str, int]:
    """The request's flavor and timeout in seconds, or the operator's defaults."""
    return (request.compute.flavor or default_flavor(),
            timeout_seconds(request.compute.timeout or os.environ.get("FACTORY_JOBS_TIMEOUT", DEFAULT_TIMEOUT)))


# ---- the estimate ---------------------------------------------------------------------------------

def parameters(request, base_dir=None) -> float | None:
    """The base model's parameter count: from its config when at hand, else from its name ('8B', '135M')."""
    if base_dir is not None:
        try:
            from accelerate import init_empty_weights
            from transformers import AutoConfig, AutoModelForCausalLM

            with init_empty_weights():
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base_dir))
            return float(sum(p.numel() for p in model.parameters()))
        except Exception:  # noqa: BLE001 - an unusual config: fall back to the name
            pass
    m = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", request.base_model.split("/")[-1].lower())
    return float(m.group(1)) * (1e9 if m.group(2) == "b" else 1e6) if m else None


@dataclass(frozen=True)
class Estimate:
    flavor: Flavor
    tokens: int
    params: float | None
    minutes: float | None
    usd: float | None
    prices: str
    timeout_s: int | None = None

    def too_long(self) -> str:
        if self.minutes is None or self.timeout_s is None or self.minutes * 60 <= self.timeout_s:
            return ""
        return (f"; LONGER than the job's timeout ({self.timeout_s / 3600:g} h): it would be stopped unfinished, so "
                "raise compute.timeout or choose a faster flavor")

    def line(self) -> str:
        f = self.flavor
        hw = f.hardware
        if self.minutes is None:
            return (f"{f.name} ({hw}, ${f.usd_per_min * 60:.2f}/h): cost not estimated "
                    f"({'unknown GPU ' + str(f.gpu) if self.params else 'parameter count unknown'}); {self.prices}")
        return (f"{f.name} ({hw}, ${f.usd_per_min * 60:.2f}/h): about {self.minutes:.0f} min, ${self.usd:.2f} "
                f"[{self.tokens:,} training tokens, {_count(self.params)} parameters, {UTILISATION:.0%} of peak "
                f"bf16, +{overhead_minutes(self.params):.0f} min start/merge/eval/upload; {self.prices}]{self.too_long()}")

    def short(self) -> str:
        """One line for a front door."""
        f = self.flavor
        hw = f.hardware
        if self.minutes is None:
            return f"on {f.name} ({hw}, ${f.usd_per_min * 60:.2f}/h); time not estimated"
        return (f"about {self.minutes:.0f} min on {f.name} ({hw}, ${f.usd_per_min * 60:.2f}/h): about ${self.usd:.2f}"
                + self.too_long())


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def overhead_minutes(params: float | None) -> float:
    return OVERHEAD_MIN + (params or 0) / 1e9  # about a minute per billion parameters to download, merge, upload


def estimate(request, flavor: Flavor, tokens: int, params: float | None, prices: str) -> Estimate:
    peak = PEAK_TFLOPS.get((flavor.gpu or "").upper())
    timeout_s = chosen(request)[1]
    if params is None or peak is None or flavor.gpus == 0:
        return Estimate(flavor, tokens, params, None, None, prices, timeout_s)
    per_token = 6.0 if not request.adapter else 4.0
    if request.gradient_checkpointing:
        per_token += 2.0  # the forward pass again in the backward
    rate = peak * 1e12 * UTILISATION * flavor.gpus * (0.5 if request.adapter == "qlora" else 1.0)
    minutes = per_token * params * tokens / rate / 60 + overhead_minutes(params)
    billed = math.ceil(minutes)  # Jobs bill by the minute
    return Estimate(flavor, tokens, params, minutes, billed * flavor.usd_per_min, prices, timeout_s)


def estimate_request(request, hub=None, flavor: str | None = None, endpoint: str | None = None) -> Estimate:
    """The estimate for a request on its flavor (or the one given): tokens as the front-door limit counts them."""
    from factory.admission.remote_policy import estimated_tokens

    name = flavor or chosen(request)[0]
    flavors, prices = hardware(endpoint or request.hub_endpoint)
    if name not in flavors:
        raise UserError(f"compute.flavor: '{name}' is not a Jobs flavor; known: {', '.join(sorted(flavors))}")
    base_dir = None
    if hub is not None and not request.base_model.lower().endswith(".gguf"):
        try:
            from factory.hub.choose import model_folder

            base_dir = model_folder(request.base_model, hub, request.revision_of_model, files=["config.json"])[0]
        except (UserError, TypeError):
            base_dir = None
    return estimate(request, flavors[name], estimated_tokens(request, hub), parameters(request, base_dir), prices)
