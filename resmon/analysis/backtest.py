"""Replaying a sizing method on a job's own history, with no look-ahead.

For every k from :data:`MIN_RUNS` on, the method sees runs 1..k (oldest first) and
its sizing is checked against run k+1, which it never saw:

- **memory fit**: run k+1's memory peak stayed at or under the memory limit (an
  OOM-killed run never fits: its peak is where it was stopped, not what it needed);
- **CPU fit**: run k+1's CPU p95 stayed at or under the CPU limit;
- **waste**: the limit minus what run k+1 used, where it fitted, averaged over the
  steps (bytes, cores): what the sizing reserved and the run left unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from resmon.analysis.formulas import METHODS, Method, Usage

MIN_RUNS = 3


@dataclass(frozen=True)
class Backtest:
    steps: int = 0
    memory_checked: int = 0
    memory_fits: int = 0
    memory_waste_bytes: float | None = None
    cpu_checked: int = 0
    cpu_fits: int = 0
    cpu_waste_cores: float | None = None

    @property
    def memory_fit_rate(self) -> float | None:
        return self.memory_fits / self.memory_checked if self.memory_checked else None

    @property
    def cpu_fit_rate(self) -> float | None:
        return self.cpu_fits / self.cpu_checked if self.cpu_checked else None

    def answer(self) -> dict[str, float | int | None]:
        return {
            **asdict(self),
            "memory_fit_rate": self.memory_fit_rate,
            "cpu_fit_rate": self.cpu_fit_rate,
        }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def replay(runs: Sequence[Usage], method: Method, start: int = MIN_RUNS) -> Backtest:
    """``method`` replayed over ``runs`` (oldest first): sized from runs[:k], checked on runs[k]."""
    history = tuple(runs)  # a tuple: a method cannot append to what it was given
    memory_checked = memory_fits = cpu_checked = cpu_fits = 0
    memory_waste: list[float] = []
    cpu_waste: list[float] = []
    steps = 0
    for k in range(max(start, 1), len(history)):
        sizing = method(history[:k])
        run = history[k]
        steps += 1
        if sizing.memory_limit is not None and run.memory_bytes_peak is not None:
            memory_checked += 1
            fits = not run.oom_killed and run.memory_bytes_peak <= sizing.memory_limit
            if fits:
                memory_fits += 1
                memory_waste.append(sizing.memory_limit - run.memory_bytes_peak)
        if sizing.cpu_limit is not None and run.cpu_cores_p95 is not None:
            cpu_checked += 1
            if run.cpu_cores_p95 <= sizing.cpu_limit:
                cpu_fits += 1
                cpu_waste.append(sizing.cpu_limit - run.cpu_cores_p95)
    return Backtest(
        steps=steps,
        memory_checked=memory_checked,
        memory_fits=memory_fits,
        memory_waste_bytes=_mean(memory_waste),
        cpu_checked=cpu_checked,
        cpu_fits=cpu_fits,
        cpu_waste_cores=_mean(cpu_waste),
    )


def replay_all(runs: Sequence[Usage]) -> dict[str, Backtest]:
    """Every method of :data:`~resmon.analysis.formulas.METHODS` on the same history."""
    return {name: replay(runs, method) for name, method in METHODS.items()}
