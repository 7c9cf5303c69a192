"""What a front door says about a running job: where it is in the whole job, and a time left that holds still."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from factory.frontdoor import job_views
from factory.queue.jobs import Job, JobEvent

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=timezone.utc)


def _job(stage: str, progress: float, status: str = "running") -> Job:
    return Job(7, "", "me/x", "hf:me", "space", status, stage, progress, 1, None, None, False, None,
               T0, T0, None, None, None)


def _tick(i: int, seconds: float, step: int, eta: float, stage: str = "train") -> JobEvent:
    return JobEvent(i, 7, T0 + timedelta(seconds=seconds), "progress",
                    {"stage": stage, "step": step, "total": 100, "fraction": step / 100, "eta_s": eta})


def test_one_slow_step_does_not_swing_the_time_left():
    # a steady 1 step/s; then one tick right after an eval pass says 9 minutes instead of 1.5
    events = [JobEvent(1, 7, T0, "stage", {"stage": "train"})]
    events += [_tick(i + 2, 10.0 * i, 10 * i, 100 - 10 * i) for i in range(1, 8)]  # steps 10..70 at 1/s: eta 90..30
    events.append(_tick(20, 71.0, 71, 540.0))
    p = job_views.progress(_job("train", 0.71), events)
    assert 25 <= p.eta_s <= 35, p.eta_s  # the median holds: about 30 s left, not 9 minutes
    assert job_views.smoothed_eta([]) is None


def test_the_status_line_says_which_stage_of_the_job_and_that_the_percentage_is_the_stages():
    events = [JobEvent(1, 7, T0, "stage", {"stage": "train"}), _tick(2, 30.0, 30, 70.0)]
    line = job_views.status_line(_job("train", 0.3), events)
    assert line.startswith("job 7: stage 3 of 8, train 30/100 (30% of this stage, about 1m10s left in it)"), line


def test_a_stage_without_steps_says_how_long_it_has_run_not_zero_percent():
    events = [JobEvent(1, 7, T0, "stage", {"stage": "merge"})]
    line = job_views.status_line(_job("merge", 0.0), events, now=T0 + timedelta(seconds=42))
    assert line == "job 7: stage 4 of 8, merge (running for 0m42s)", line
    assert "0%" not in line
    assert job_views.status_line(_job("publish", 1.0, "succeeded"), events) == "job 7: succeeded -> me/x"


def test_a_long_curve_is_thinned_evenly_with_its_ends_kept():
    points = [{"step": i, "loss": 1 / i, "split": "train"} for i in range(1, 5001)]
    points += [{"step": i, "loss": 0.5, "split": "eval"} for i in range(100, 5001, 100)]
    out = job_views.thinned(points, most=400)
    train = [p["step"] for p in out if p["split"] == "train"]
    assert len(train) == 400 and train[0] == 1 and train[-1] == 5000 and train == sorted(set(train))
    assert max(b - a for a, b in zip(train, train[1:])) <= 14  # evenly spread: about 5000/400 apart
    assert [p for p in out if p["split"] == "eval"] == points[5000:]  # 50 eval points: all kept
    assert job_views.thinned(points[:10]) == points[:10]
