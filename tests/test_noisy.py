"""Noisy nets (Fortunato et al. 2018): NoisyLinear's factorised noise and its statistics, the
learner's redraws (per update, online and target each; per acting step), greedy evaluation with
the mean weights, epsilon 0 (one rule in the config), and the Ray actors' acting net."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastdqn.env.spec import make_env
from fastdqn.learn.learner import Learner, epsilon_at, apex_epsilon
from fastdqn.learn.model import SIGMA0, NoisyLinear, QNetSpec
from fastdqn.run import TrainConfig
from fastdqn.run.actors import acting_net
from fastdqn.run.evaluation import evaluate_policy


def noise_of(net) -> list[torch.Tensor]:
    return [t.clone() for m in net.modules() if isinstance(m, NoisyLinear) for t in (m.eps_in, m.eps_out)]


def test_the_noise_is_f_of_a_standard_normal():
    """f(x) = sign(x) sqrt(|x|) of x ~ N(0, 1): mean 0 and E f(x)^2 = E|x| = sqrt(2 / pi)."""
    torch.manual_seed(0)
    layer = NoisyLinear(20_000, 200)
    draws = []
    for _ in range(10):
        layer.reset_noise()
        draws += [layer.eps_in.clone(), layer.eps_out.clone()]
    eps = torch.cat(draws).double()
    assert abs(eps.mean().item()) < 0.01
    assert (eps ** 2).mean().item() == pytest.approx(math.sqrt(2 / math.pi), abs=0.01)


def test_the_perturbation_is_sigma_times_the_outer_product_of_the_noise():
    torch.manual_seed(0)
    layer = NoisyLinear(7, 5)
    with torch.no_grad():
        layer.weight_sigma.uniform_(0.1, 1.0)
        layer.bias_sigma.uniform_(0.1, 1.0)
    x = torch.randn(3, 7)
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(layer.eps_out, layer.eps_in)
    bias = layer.bias_mu + layer.bias_sigma * layer.eps_out
    torch.testing.assert_close(layer(x), x @ weight.T + bias)
    # the initial scales: sigma0 / sqrt(fan-in), mu uniform within +-1 / sqrt(fan-in)
    fresh = NoisyLinear(16, 4)
    torch.testing.assert_close(fresh.weight_sigma, torch.full((4, 16), SIGMA0 / 4))
    assert fresh.weight_mu.abs().max() <= 0.25


def test_each_reset_draws_anew_and_eval_mode_is_the_mean_layer():
    torch.manual_seed(0)
    layer = NoisyLinear(6, 4)
    x = torch.randn(2, 6)
    before, out = (layer.eps_in.clone(), layer.eps_out.clone()), layer(x)
    layer.reset_noise()
    assert not torch.equal(before[0], layer.eps_in) and not torch.equal(before[1], layer.eps_out)
    assert not torch.allclose(out, layer(x))
    layer.eval()
    torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
    assert "eps_in" not in layer.state_dict()  # a checkpoint holds mu and sigma, never the noise


def test_the_learner_redraws_both_nets_noise_per_update_and_the_online_nets_per_act():
    torch.manual_seed(0)
    spec = QNetSpec(3, (2, 4), "dueling", atoms=11, noisy=True)
    learner = Learner(spec, device="cpu", double=True)
    obs = torch.rand(8, 2, 4)
    b = (obs, torch.randint(0, 3, (8,)), torch.randn(8), obs.flip(0), torch.zeros(8))
    online, target = noise_of(learner.online), noise_of(learner.target)
    learner.update(b)
    assert all(not torch.equal(a, z) for a, z in zip(online, noise_of(learner.online)))
    assert all(not torch.equal(a, z) for a, z in zip(target, noise_of(learner.target)))
    assert not any(torch.equal(a, z) for a, z in zip(noise_of(learner.online), noise_of(learner.target)))
    online = noise_of(learner.online)
    learner.act(obs, 0.0, np.random.default_rng(0))
    assert all(not torch.equal(a, z) for a, z in zip(online, noise_of(learner.online)))


def test_acting_through_the_noise_varies_the_greedy_actions():
    """Epsilon 0: the noise alone explores, a new draw each step (large sigma: a near-even split)."""
    torch.manual_seed(0)
    learner = Learner(QNetSpec(3, (1, 4), noisy=True), device="cpu")
    with torch.no_grad():
        for m in learner.online.modules():
            if isinstance(m, NoisyLinear):
                m.weight_sigma.fill_(3.0)
    obs = torch.ones(1, 1, 4)
    actions = {int(learner.act(obs, 0.0, np.random.default_rng(0))[0]) for _ in range(60)}
    assert len(actions) >= 2


def test_greedy_evaluation_uses_the_mean_weights_and_restores_the_mode():
    torch.manual_seed(0)
    net = QNetSpec(2, (1, 4), noisy=True).build()
    modes = []
    net.register_forward_pre_hook(lambda m, args: modes.append(m.training))
    env = make_env("CartPole-v1")
    first = evaluate_policy(net, env, episodes=2, seed=0)
    assert modes and not any(modes)
    assert net.training  # put back
    net.reset_noise()  # a new draw changes nothing in eval mode: the same games again
    assert evaluate_policy(net, env, episodes=2, seed=0)["returns"] == first["returns"]


def test_epsilon_is_zero_with_noisy_nets_for_the_trainer_and_every_ray_actor():
    cfg = TrainConfig(eps_start=1.0, eps_final=0.1, eps_decay_frames=100)
    assert [cfg.epsilon_at(f) for f in (0, 50, 200)] == [epsilon_at(f, 1.0, 0.1, 100) for f in (0, 50, 200)]
    noisy = TrainConfig(noisy=True)
    assert [noisy.epsilon_at(f) for f in (0, 10**6)] == [0.0, 0.0]
    assert TrainConfig(ray=True, actors=3).actor_epsilons() == [apex_epsilon(i, 3) for i in range(3)]
    assert TrainConfig(ray=True, actors=1).actor_epsilons() == [(1.0, 0.01, 150_000)]
    assert TrainConfig(ray=True, actors=3, noisy=True).actor_epsilons() == [0.0] * 3


def test_a_ray_actor_acts_with_a_noisy_net_in_train_mode_and_others_in_eval_mode():
    assert acting_net(QNetSpec(3, (1, 4), noisy=True)).training
    assert not acting_net(QNetSpec(3, (1, 4))).training



# Rainbow's parts but prioritized replay, whose resume is the replay's (tests/test_resume.py):
# measured on this commit, some prioritized CartPole runs (dueling, no C51 or noise) resume with other weights
RAINBOW_PARTS = dict(double=True, dueling=True, n_step=3, distributional=True, noisy=True, adam_eps=1.5e-4)


def test_a_noisy_c51_run_resumes_exactly_and_its_checkpoint_evaluates_and_plays(tmp_path):
    """On CartPole: a run split by a resume is the whole run (the noise comes from torch's RNG,
    which last.pt saves; the noise buffers themselves are redrawn before each use), and eval and
    play load its net (51 atoms, noisy) from the checkpoint."""
    from fastdqn.evaluate import evaluate
    from fastdqn.play import play
    from fastdqn.run import train
    from fastdqn.run.checkpoint import load_checkpoint

    cfg = dict(env_id="CartPole-v1", replay_size=2000, replay_start=300, batch_size=8, replay_ratio=0.25,
               sync_target=100, progress=False, torch_threads=1, checkpoint_every=250, seed=3, env_backend="process",
               save_replay=True, num_envs=2, num_workers=1, **RAINBOW_PARTS)
    whole = train(TrainConfig(out=str(tmp_path / "whole"), frames=900, **cfg))
    train(TrainConfig(out=str(tmp_path / "split"), frames=410, **cfg))
    rest = train(resume=str(tmp_path / "split"), frames=900)
    assert rest.rewards == whole.rewards and whole.rewards
    a, b = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["net"] == b["net"] and a["net"]["atoms"] == 51 and a["net"]["noisy"]
    for part in ("online", "target"):
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    assert a["optimizer"]["param_groups"][0]["eps"] == 1.5e-4
    last = str(tmp_path / "whole" / "last.pt")
    summary = evaluate(last, episodes=2, epsilon=0.0, device="cpu", echo=lambda s: None)
    assert len(summary["returns"]) == 2
    assert play(last, episodes=1, device="cpu", echo=lambda s: None) == [summary["returns"][0]]  # greedy: same game
