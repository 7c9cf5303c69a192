"""The `compute:` request key, the operator's bounds on it, and the Jobs cost estimate `factory validate` prints."""

from __future__ import annotations

import json

import pytest
import yaml

from factory.base.errors import UserError


def _demo(**over) -> dict:
    from factory.demo import demo

    return {**yaml.safe_load(demo.REQUEST.read_text()), **over}


@pytest.fixture
def prices(tmp_path, monkeypatch):
    from hub_server import HARDWARE

    path = tmp_path / "prices.json"
    path.write_text(json.dumps(HARDWARE))
    monkeypatch.setenv("FACTORY_JOBS_PRICES", str(path))
    return path


def test_timeouts_are_written_as_the_jobs_api_writes_them():
    from factory.request.durations import timeout_seconds

    assert [timeout_seconds(t) for t in ("3600", "90m", "2h", "1.5h", "1d", "45s")] == [3600, 5400, 7200, 5400, 86400, 45]
    for bad in ("", "2 hours", "-1h", "0", "h"):
        with pytest.raises(UserError, match="is not a duration such as 3600, 90m, 2h or 1d"):
            timeout_seconds(bad)


def test_the_compute_key_is_validated_at_the_door(demo_hub, tmp_path):
    from factory.request.config import loads_request

    ok = loads_request(yaml.safe_dump(_demo(compute={"flavor": "a10g-large", "timeout": "2h"})))
    assert (ok.compute.flavor, ok.compute.timeout) == ("a10g-large", "2h")
    with pytest.raises(UserError, match="'A10G Large' is not a Jobs flavor name"):
        loads_request(yaml.safe_dump(_demo(compute={"flavor": "A10G Large"})))
    with pytest.raises(UserError, match="timeout 'two hours' is not a duration"):
        loads_request(yaml.safe_dump(_demo(compute={"timeout": "two hours"})))
    with pytest.raises(UserError, match="gpus"):
        loads_request(yaml.safe_dump(_demo(compute={"gpus": 8})))


def test_strangers_get_the_flavors_and_timeout_the_operator_allows(demo_hub, monkeypatch):
    from factory.request.config import loads_request
    from factory.admission.remote_policy import RemoteLimits, check_request

    def check(**compute):
        request = loads_request(yaml.safe_dump(_demo(hub_model_id="alice/x", compute=compute)))
        check_request(request, "hf:alice", "form", RemoteLimits(), demo_hub)

    check(flavor="a10g-small", timeout="6h")
    check(flavor="t4-medium")
    with pytest.raises(UserError, match="limit flavors: compute.flavor 'h200x8' is not offered here"):
        check(flavor="h200x8")
    with pytest.raises(UserError, match="limit max_timeout: compute.timeout is 2d; this factory allows at most 6h"):
        check(timeout="2d")


def test_the_estimate_is_the_arithmetic_it_prints(demo_hub, prices):
    import math

    from factory.queue.compute import PEAK_TFLOPS, UTILISATION, estimate_request, overhead_minutes
    from factory.request.config import loads_request
    from factory.admission.remote_policy import estimated_tokens

    request = loads_request(yaml.safe_dump(_demo(max_steps=None)))
    est = estimate_request(request, demo_hub, "t4-small")
    assert est.tokens == estimated_tokens(request, demo_hub) > 0
    import torch  # noqa: F401 - the parameter count below loads the base itself, to compare
    from transformers import AutoModelForCausalLM

    from factory.hub.choose import model_folder

    base = AutoModelForCausalLM.from_pretrained(model_folder(request.base_model, demo_hub)[0])
    assert est.params == sum(p.numel() for p in base.parameters())
    per_token = 4.0 + (2.0 if request.gradient_checkpointing else 0.0)  # LoRA
    minutes = per_token * est.params * est.tokens / (PEAK_TFLOPS["T4"] * 1e12 * UTILISATION) / 60 \
        + overhead_minutes(est.params)
    assert est.minutes == pytest.approx(minutes)
    assert est.usd == pytest.approx(math.ceil(minutes) * 0.006667)
    assert "t4-small (1x T4, $0.40/h): about" in est.line() and "prices from FACTORY_JOBS_PRICES" in est.line()

    two = estimate_request(request, demo_hub, "test-gpux2")  # two GPUs: the training part halves
    assert two.minutes - overhead_minutes(two.params) == pytest.approx((minutes - overhead_minutes(est.params)) / 2)
    short = loads_request(yaml.safe_dump(_demo(max_steps=None, compute={"timeout": "1m"})))
    assert "LONGER than the job's timeout" in estimate_request(short, demo_hub, "t4-small").line()
    with pytest.raises(UserError, match="'h900' is not a Jobs flavor; known: cpu-basic, t4-medium"):
        estimate_request(request, demo_hub, "h900")


def test_validate_prints_the_cost_on_each_flavor_asked(demo_hub, prices, tmp_path, capsys, monkeypatch):
    from factory.cli.main import main

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_demo()))
    assert main(["validate", str(path)]) == 0
    assert "hf-jobs" not in capsys.readouterr().out  # the local backend and no compute key: nothing to price
    assert main(["validate", str(path), "--flavor", "t4-small", "--flavor", "t4-medium"]) == 0
    out = capsys.readouterr().out
    assert "cost    hf-jobs t4-small (1x T4, $0.40/h): about" in out
    assert "cost    hf-jobs t4-medium (1x T4, $0.60/h): about" in out
    monkeypatch.setenv("FACTORY_BACKEND", "hf-jobs")
    monkeypatch.setenv("FACTORY_JOBS_FLAVOR", "cpu-basic")
    assert main(["validate", str(path)]) == 0
    assert "hf-jobs cpu-basic (CPU, $0.01/h): cost not estimated" in capsys.readouterr().out


def test_prices_come_from_the_hub_and_are_cached_a_day(hub, home, monkeypatch):
    from factory.queue.compute import hardware

    flavors, source = hardware()
    assert flavors["t4-medium"].usd_per_min == pytest.approx(0.01) and flavors["test-gpux2"].gpus == 2
    assert source.startswith(f"prices from {hub.url}")
    asked = sum(r.startswith("GET /api/jobs/hardware") for r in hub.state.requests)
    hardware()
    assert sum(r.startswith("GET /api/jobs/hardware") for r in hub.state.requests) == asked  # cached
    cache = home / "cache" / "jobs-hardware.json"
    data = json.loads(cache.read_text())
    data["fetched"] = "2000-01-01T00:00:00+00:00"
    cache.write_text(json.dumps(data))
    hub.state.fail_next = 10  # the Hub is down: the stale list is used, and says so
    flavors, source = hardware()
    assert "t4-small" in flavors and "cached 2000-01-01" in source and "refresh failed" in source
