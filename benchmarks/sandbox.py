"""Sandbox speed: environment steps per second (target >= 100,000 per core for the gridworlds)
and the wall time of the full verification table.

    .venv/bin/python benchmarks/sandbox.py                 # steps/s, then the table at 10 seeds
    .venv/bin/python benchmarks/sandbox.py --no-table      # steps/s only
    .venv/bin/python benchmarks/sandbox.py --seeds 3 --workers 2

Steps are random actions on the unwrapped environment (the path agents train on), with resets
counted in; the ``gym.make`` column adds Gymnasium's default wrappers (order enforcing, the
passive environment checker). One process, so per core.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np

from alignlab.sandbox.envs import ENVS, gym_id, make
from alignlab.sandbox.verify import verify_into

TARGET = 100_000


def steps_per_second(env, n: int) -> float:
    actions = np.random.default_rng(0).integers(env.action_space.n, size=n).tolist()
    env.reset(seed=0)
    step, reset = env.step, env.reset
    started = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            reset()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300_000, help="random steps per environment")
    parser.add_argument("--seeds", type=int, default=10, help="seeds for the verification table")
    parser.add_argument("--workers", type=int, default=1, help="processes for the table")
    parser.add_argument("--no-table", action="store_true", help="skip the verification table")
    args = parser.parse_args()

    print(f"{'environment':20s} {'steps/s':>12s} {'x target':>9s} {'gym.make steps/s':>17s}")
    for name in ENVS:
        fast = steps_per_second(make(name), args.steps)
        wrapped = steps_per_second(gym.make(gym_id(name)), args.steps // 3)
        print(f"{name:20s} {fast:12,.0f} {fast / TARGET:9.1f} {wrapped:17,.0f}")

    if args.no_table:
        return
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        metrics = verify_into(tmp, args.seeds, workers=args.workers, log=lambda _: None)
        table = time.perf_counter() - started
    s = metrics["sandbox"]["summary"]
    print(f"verification table: {s['pairs']} pairs x {args.seeds} seeds, {args.workers} worker(s): "
          f"{table:.1f} s wall including figures; {s['agree']} of {s['pairs']} pairs agree")


if __name__ == "__main__":
    main()
