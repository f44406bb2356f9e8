"""Autotune resists noise (issue #11, part 5): each measurement lasts at least 20 ms, candidates
are compared with their spread, fewer workers win ties, and a crossover is reported only when the
measurements support it. Driven by a synthetic clock whose calls take a known time plus noise, so
the truth is known and the test does not depend on this machine's load."""

from __future__ import annotations

import numpy as np
import pytest
import threadx
from threadx import _internal, tuning


class SyntheticClock:
    """A clock that only moves when a call "runs": by ``truth(workers, rows)`` times a random
    factor (multiplicative noise) plus a random scheduler hiccup now and then."""

    def __init__(self, truth, noise: float, seed: int, hiccups: bool = True) -> None:
        self.now = 0.0
        self.hiccups = hiccups
        self.truth = truth
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def __call__(self) -> float:
        return self.now

    def run(self, df, expr) -> None:
        workers = _internal.get_threads() or 1
        t = self.truth(workers, df.height) * (1.0 + self.noise * self.rng.uniform(-1, 1))
        if self.hiccups and self.rng.random() < 0.05:
            t += 20e-6  # a descheduled thread
        self.now += t


def tune(monkeypatch, clock: SyntheticClock, sizes: list[int]) -> threadx.TuneSummary:
    monkeypatch.setattr(tuning, "_clock", clock)
    monkeypatch.setattr(tuning, "_run", clock.run)
    return threadx.autotune(sizes=sizes, runs=5, indicators=["sma"], devices=["cpu"],
                            progress=False)  # fmt: skip


def cpu_backends(summary, size) -> list[str]:
    return [b for b in summary.timings_ms["sma"][size] if b.startswith("cpu:")]


def test_a_measurement_repeats_the_call_until_it_lasts_20_ms(monkeypatch) -> None:
    clock = SyntheticClock(lambda w, n: 3e-6, noise=0.0, seed=0, hiccups=False)
    monkeypatch.setattr(tuning, "_clock", clock)
    seconds, calls = tuning._measure(lambda: clock.run(type("F", (), {"height": 1})(), None))
    assert calls >= 0.02 / 3e-6 - 1 and seconds == pytest.approx(3e-6)


@pytest.mark.parametrize("seed", range(6))
def test_equal_backends_within_the_noise_pick_fewer_workers_and_report_no_crossover(
    monkeypatch, seed: int
) -> None:
    """Every worker count equally fast (tiny inputs): with ±30 % noise, a median rule picks a
    random "fastest" per size and reports crossovers (1,000: cpu:2, 10,000: cpu:1, ...)."""
    clock = SyntheticClock(lambda w, n: 2e-6 + n * 1e-10, noise=0.3, seed=seed)
    summary = tune(monkeypatch, clock, [1_000, 10_000, 100_000])
    for size in summary.sizes:
        assert len(cpu_backends(summary, size)) >= 2, summary.timings_ms  # something to choose
        assert summary.best("sma", size) == "cpu:1", (size, summary.timings_ms, summary.spread_ms)
    assert summary.crossovers == {}, summary


@pytest.mark.parametrize("seed", range(3))
def test_a_real_crossover_is_reported(monkeypatch, seed: int) -> None:
    """Two workers cost a fixed 50 µs to start and halve the per-row time: one worker wins at
    1,000 rows, two from 1,000,000 on (by far more than the ±10 % noise)."""
    truth = lambda w, n: (0.0 if w == 1 else 50e-6) + n * 2e-9 / w
    clock = SyntheticClock(truth, noise=0.1, seed=seed)
    summary = tune(monkeypatch, clock, [1_000, 1_000_000])
    assert "cpu:2" in cpu_backends(summary, 1_000_000), summary.timings_ms
    assert summary.best("sma", 1_000) == "cpu:1"
    assert summary.best("sma", 1_000_000) != "cpu:1"
    assert [(n, old) for n, old, _ in summary.crossovers["sma"]] == [(1_000_000, "cpu:1")]


def test_pick_needs_a_win_beyond_both_spreads() -> None:
    medians = {"cpu:1": 1.00, "cpu:2": 0.90, "cpu:4": 0.60}
    assert tuning.pick(medians, {"cpu:1": 0.06, "cpu:2": 0.06, "cpu:4": 0.1}) == "cpu:4"
    assert tuning.pick(medians, {"cpu:1": 0.06, "cpu:2": 0.06, "cpu:4": 0.5}) == "cpu:1"
    assert tuning.pick({"gpu:0": 0.5, "cpu:1": 0.52}, {"gpu:0": 0.05, "cpu:1": 0.0}) == "cpu:1"
    assert tuning.pick({"gpu:0": 0.1, "cpu:1": 0.52}, {"gpu:0": 0.05, "cpu:1": 0.01}) == "gpu:0"
