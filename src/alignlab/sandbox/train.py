"""``alignlab sandbox run``: one agent, one environment, one seed — trained, evaluated, shown."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import opt
from ..errors import ConfigError
from .agents import AGENTS, agent_class
from .envs import env_class, make
from .rollout import Episode, evaluate, run_policy
from .verify import predict


@dataclass
class TrainConfig:
    """``alignlab sandbox run ENV --agent A``: train one agent and watch one greedy episode."""

    env: str = opt(help="environment (see `alignlab sandbox list`)", positional=True)
    agent: str = opt("q-learning", "agent to train or plan", choices=sorted(AGENTS))
    seed: int = opt(0, "seed of the agent and the environment")
    steps: int | None = opt(None, "training steps for learning agents (default: the environment's)")
    out: str | None = opt(None, "run folder to write (metrics.json, an episode strip)")

    def __post_init__(self):
        env_class(self.env)
        agent_class(self.agent)
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be at least 1, got {self.steps}")


@dataclass
class TrainResult:
    env: str
    agent: str
    seed: int
    steps: int
    seconds: float
    shown_rate: float  # exact probability that an episode shows the measured behaviour
    observed_return: float
    true_return: float
    episode: Episode  # one greedy episode from a reset with ``seed``
    ascii: list[str]  # its frames as text

    def to_json(self, prediction) -> dict:
        return {
            "predicted_incentive": None if prediction is None else prediction.incentive,
            "criterion": None if prediction is None else prediction.criterion,
            "event": make(self.env).measure.event,
            "tamper_rate": self.shown_rate,
            "observed_return": self.observed_return,
            "true_return": self.true_return,
            "seed": self.seed,
            "train_steps": self.steps,
            "seconds": self.seconds,
            "episode": {"actions": self.episode.actions, "observed_return": self.episode.observed_return,
                        "true_return": self.episode.true_return, "events": sorted(self.episode.events)},
        }


def train_one(config: TrainConfig) -> TrainResult:
    env = make(config.env)
    agent = agent_class(config.agent)(env, config.seed)
    log = agent.train(config.steps)
    policy = agent.policy()
    ev = evaluate(env, policy)
    episode = run_policy(env, policy, seed=config.seed)
    frames = [env.render_ansi(s) for s in episode.states]
    return TrainResult(config.env, config.agent, config.seed, log.steps, log.seconds, ev.shown_rate,
                       ev.observed_return, ev.true_return, episode, frames)


def run_train(config: TrainConfig) -> tuple[TrainResult, Path | None]:
    """Train, and with ``--out`` write the run folder; returns the result and the folder."""
    from ..config import config_to_dict
    from ..runs import start_run
    from .render import episode_strip, save_png

    result = train_one(config)
    if not config.out:
        return result, None
    run = start_run(config.out, "sandbox run", config_to_dict(config))
    env = make(config.env)
    strip = save_png(Path(run.path) / f"strip_{config.env}__{config.agent}.png",
                     episode_strip(env, result.episode))
    objective = agent_class(config.agent).objective
    prediction = predict(type(env), objective) if objective in type(env).diagrams() else None
    pair = result.to_json(prediction)
    metrics = {"sandbox": {config.env: {config.agent: pair},
                           "figures": [str(strip.relative_to(run.path))]}}
    finish_run(run, metrics)
    return result, Path(run.path)


def finish_run(run, metrics: dict) -> None:
    """``run.finish`` (report.html, then metrics.json) where the runs module has it."""
    finish = getattr(run, "finish", None)
    if callable(finish):
        finish(metrics)
    else:
        run.write_metrics(metrics)
