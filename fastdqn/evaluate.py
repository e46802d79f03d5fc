"""``fastdqn eval``: a checkpoint's policy played as the field reports it, at an evaluation
epsilon (Nature DQN: 0.05, Dopamine: 0.001), whole games with raw scores; mean, std, min, max,
and for Atari games the human-normalised score of the mean."""

from __future__ import annotations

import json
import os

import numpy as np

from fastdqn.atomic import atomic_write, check_output_path
from fastdqn.env.atari_scores import human_normalized
from fastdqn.env.wrappers import rgb_screen as screen
from fastdqn.errors import user_input
from fastdqn.play import check_play_args, open_policy, video_writer
from fastdqn.run.evaluation import play_episodes


def evaluate(checkpoint, *, episodes: int = 30, epsilon: float = 0.05, sticky_actions: float | None = None,
             seed: int = 0, device: str = "auto", max_steps: int | None = None, json_out=None, video=None,
             echo=print) -> dict:
    """Play ``episodes`` episodes; return (and print) the summary. ``json_out`` gets the summary
    and every episode's return and length; ``video`` an mp4 of the first episode."""
    with user_input():  # the arguments, the checkpoint and its env
        check_play_args(checkpoint, episodes=episodes, epsilon=epsilon, seed=seed, max_steps=max_steps, video=video)
        if json_out is not None:
            if not isinstance(json_out, (str, os.PathLike)):
                raise TypeError(f"json: expected a file path, got {type(json_out).__name__}")
            check_output_path(json_out, "json", directory=False)  # before the episodes, not after
        model, state, spec, env = open_policy(checkpoint, device, sticky_actions)
    writer = None
    try:
        if video is not None:
            with user_input():  # an env with no screen to record
                writer = video_writer(env, spec, video)
        returns, lengths = [], []

        def record(e):
            if writer is not None:
                writer.write(screen(e))
        for ep, (score, steps, _) in enumerate(play_episodes(model, env, episodes=episodes, epsilon=epsilon,
                                                             seed=seed, max_steps=max_steps, on_step=record)):
            returns.append(score)
            lengths.append(steps)
            if writer is not None and ep == 0:
                writer.close()
                writer = None
    finally:
        env.close()
        if writer is not None:
            writer.close()
    r = np.array(returns, float)
    summary = {"checkpoint": os.fspath(checkpoint), "env_id": spec.env_id, "episodes": episodes, "epsilon": epsilon,
               "protocol": spec.protocol(), "mean": float(r.mean()), "std": float(r.std()), "min": float(r.min()),
               "max": float(r.max()), "human_normalized": human_normalized(spec.env_id, float(r.mean())),
               "returns": returns, "lengths": lengths}
    line = (f"{spec.env_id}: {episodes} episodes at epsilon {epsilon:g}: mean {summary['mean']:.2f}, "
            f"std {summary['std']:.2f}, min {summary['min']:g}, max {summary['max']:g}")
    if summary["human_normalized"] is not None:
        line += f"; human-normalised {100 * summary['human_normalized']:.1f}%"
    echo(line)
    if json_out is not None:
        with user_input():  # a --json path that cannot be written
            atomic_write(json_out, lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()), what="json")
    return summary
