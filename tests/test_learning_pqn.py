"""PQN learns (``--algo pqn``): fixed seeds, frame budgets, greedy evaluations far above random,
as tests/test_learning.py asks of DQN, on the same two games and through the same helpers.

- CartPole-v1: ``fastdqn train --preset pqn-cartpole`` (purejaxql's CartPole settings, 32 envs).
- PixelCatch-v0 (tests/pixel_catch.py): Atari-sized RGB frames through the fused kernel, frame
  stacks and Nature DQN with LayerNorm, 16 envs x 32-step rollouts. Its settings live here, not
  in a preset: the game is the tests' own module, and a preset would name it in the package.

Planted bugs (``PLANTS``), each in the Q(lambda) returns, must make a learning test fail.
"""

from __future__ import annotations

import pytest
import torch

import test_learning
from fastdqn.learn import pqn as pqn_mod
from test_learning import CATCH, _without, random_mean, train_and_evaluate

PQN_CARTPOLE = ["train", "--preset", "pqn-cartpole", "--seed", "0", "--threads", "1", "--num-workers", "0",
                "--no-progress", "--no-tensorboard"]
# DQN's PixelCatch flags without its replay's, then PQN's: 16 envs x 32 steps, 4 epochs of 8
# minibatches of 64, lr 2.5e-4, epsilon to 0.05 over half the run (2 epochs of 4 reached 15-21
# in 40k agent steps; lr 5e-4 or 16-step rollouts did worse).
PQN_CATCH = _without(CATCH, "--num-envs", "--replay-size", "--replay-start", "--lr", "--sync-target",
                     "--eps-decay-frames", "--replay-ratio", "--loss", "--frames", "--eval-every", "--threads") + [
    "--algo", "pqn", "--threads", "1", "--num-envs", "16", "--rollout-steps", "32", "--epochs", "4",
    "--minibatches", "8", "--lr", "2.5e-4", "--eps-decay-frames", "16000", "--frames", "32000",
    "--eval-every", "4000"]
# (argv, the greedy mean of 20 episodes it must reach, a random policy's mean)
GAMES = {"pqn-cartpole": (PQN_CARTPOLE, 450.0, 22.0), "pqn-catch": (PQN_CATCH, 20.0, -0.64)}


def _train(game, tmp_path, monkeypatch) -> dict:
    monkeypatch.setitem(test_learning.GAMES, game, GAMES[game])  # train_and_evaluate reads its games there
    return train_and_evaluate(game, tmp_path)


def test_the_random_baselines_are_the_dqn_tests():
    assert random_mean("CartPole-v1") == pytest.approx(GAMES["pqn-cartpole"][2], abs=3)
    assert GAMES["pqn-catch"][2] == test_learning.GAMES["catch"][2]


@pytest.mark.slow
@pytest.mark.parametrize("game", sorted(GAMES))
def test_pqn_learns_far_above_random(game, tmp_path, monkeypatch):
    _, want, random = GAMES[game]
    summary = _train(game, tmp_path, monkeypatch)
    assert summary["mean"] >= want, f"{game}: greedy mean {summary['mean']:.2f}, random {random}"


def _returns_with(change):
    original = pqn_mod.q_lambda_returns

    def planted(rewards, terminated, truncated, next_values, gamma, lam):
        return original(*change(rewards, terminated, truncated, next_values), gamma, lam)
    return planted


def _computed_forwards(monkeypatch):
    """The recursion runs from the rollout's first step to its last (each return from the one before)."""
    flip = lambda *xs: [x.flip(0) for x in xs]  # noqa: E731
    original = pqn_mod.q_lambda_returns
    monkeypatch.setattr(pqn_mod, "q_lambda_returns",
                        lambda r, te, tr, v, g, lam: original(*flip(r, te, tr, v), g, lam).flip(0))


def _termination_ignored(monkeypatch):
    monkeypatch.setattr(pqn_mod, "q_lambda_returns",
                        _returns_with(lambda r, te, tr, v: (r, torch.zeros_like(te), tr, v)))


# (bug, the learning test it must fail); README "What learns" has the whole matrix, run once
PLANTS = [(_termination_ignored, "pqn-cartpole"), (_computed_forwards, "pqn-catch")]


@pytest.mark.slow
@pytest.mark.parametrize("plant, game", [pytest.param(p, g, marks=[pytest.mark.heavy] if g == "pqn-catch" else [])
                                         for p, g in PLANTS], ids=[f"{p.__name__[1:]}-{g}" for p, g in PLANTS])
def test_a_planted_bug_fails_the_pqn_learning_test(plant, game, monkeypatch, tmp_path):
    plant(monkeypatch)
    _, want, _ = GAMES[game]
    summary = _train(game, tmp_path, monkeypatch)
    assert summary["mean"] < want, f"{plant.__name__} still reaches {summary['mean']:.2f} on {game}"
