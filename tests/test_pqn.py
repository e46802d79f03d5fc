"""PQN (``--algo pqn``, fastdqn.learn.pqn and fastdqn.run.pqn_trainer): the Q(lambda) returns
against the definition, the rollout's bookkeeping (what was acted on, the bootstrap, truncations),
the minibatch step (eager against a plain reference; graphed against eager on CUDA), and the run
around it: presets, refused DQN flags, checkpoints that eval and play, resume, overlap."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from fastdqn.cli import main
from fastdqn.evaluate import evaluate
from fastdqn.learn.model import QNetSpec
from fastdqn.learn.pqn import PQNLearner, q_lambda_returns
from fastdqn.play import play
from fastdqn.run import TrainConfig, Trainer, preset
from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.run.pqn_trainer import PQNTrainer

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]


def reference_returns(rewards, terminated, truncated, q, q_final, gamma, lam):
    """The lambda-return from its definition, one (t, n) at a time, in float64: the (1 - lam)
    lam^(k-1)-weighted mean of the k-step returns G^(k) = sum_i gamma^i r_{t+i} + gamma^k max_a
    Q(s_{t+k}), over the k steps to the episode's end or the rollout's, the rest of the weight on
    the longest one. Its bootstrap is 0 after a termination, a truncated episode's last
    observation (``q_final``), or the rollout's next observation (``q[T]``); ``q`` is [T + 1, N, A]."""
    T, N = rewards.shape
    out = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            h = t
            while not (terminated[h, n] or truncated[h, n]) and h < T - 1:
                h += 1
            steps = h - t + 1
            total = 0.0
            for k in range(1, steps + 1):
                g = sum(gamma ** i * float(rewards[t + i, n]) for i in range(k))
                if k < steps:
                    boot = q[t + k, n].max()
                elif terminated[h, n]:
                    boot = 0.0
                elif truncated[h, n]:
                    boot = q_final[h, n].max()
                else:
                    boot = q[T, n].max()
                g += gamma ** k * float(boot)
                total += ((1 - lam) * lam ** (k - 1) if k < steps else lam ** (steps - 1)) * g
            out[t, n] = total
    return out


@st.composite
def rollouts(draw):
    T, N, A = draw(st.integers(1, 12)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p_term, p_trunc = draw(st.sampled_from([0.0, 0.1, 0.4])), draw(st.sampled_from([0.0, 0.1, 0.4]))
    return dict(rewards=rng.normal(0, 3, (T, N)).astype(np.float32), terminated=rng.random((T, N)) < p_term,
                truncated=rng.random((T, N)) < p_trunc, q=rng.normal(0, 5, (T + 1, N, A)).astype(np.float32),
                q_final=rng.normal(0, 5, (T, N, A)).astype(np.float32),
                gamma=draw(st.floats(0, 1)), lam=draw(st.floats(0, 1)))


@settings(max_examples=300, deadline=None)
@given(rollouts())
def test_q_lambda_returns_match_the_definition(r):
    """Random rewards, terminations, truncations (both at once too), Q-values, lambda, gamma, T, N."""
    truncated = torch.from_numpy(r["truncated"])
    next_values = torch.where(truncated, torch.from_numpy(r["q_final"]).amax(-1), torch.from_numpy(r["q"][1:]).amax(-1))
    got = q_lambda_returns(torch.from_numpy(r["rewards"]), torch.from_numpy(r["terminated"]), truncated,
                           next_values, r["gamma"], r["lam"])
    want = reference_returns(r["rewards"], r["terminated"], r["truncated"], r["q"], r["q_final"], r["gamma"], r["lam"])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4, atol=1e-3)


def test_q_lambda_returns_at_the_ends_of_lambda():
    """lam 0: one-step targets; lam 1: the discounted rewards to the cut, then the bootstrap."""
    r = torch.tensor([[1.0], [2.0], [3.0]])
    no = torch.zeros(3, 1, dtype=torch.bool)
    v = torch.tensor([[10.0], [20.0], [30.0]])
    torch.testing.assert_close(q_lambda_returns(r, no, no, v, 0.5, 0.0), r + 0.5 * v)
    torch.testing.assert_close(q_lambda_returns(r, no, no, v, 0.5, 1.0),
                               torch.tensor([[1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 30], [2 + 0.5 * 3 + 0.25 * 30],
                                             [3 + 0.5 * 30]]))
    term = torch.tensor([[False], [True], [False]])
    torch.testing.assert_close(q_lambda_returns(r, term, no, v, 0.5, 1.0)[:2], torch.tensor([[1 + 0.5 * 2], [2.0]]))


def test_q_lambda_returns_refuse_mismatched_inputs():
    r = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="terminated: expected the rewards' shape"):
        q_lambda_returns(r, torch.zeros(3, 1, dtype=torch.bool), torch.zeros(3, 2, dtype=torch.bool), r, 0.9, 0.5)
    with pytest.raises(ValueError, match="gamma, lam"):
        q_lambda_returns(r, r.bool(), r.bool(), r, 0.9, 1.5)


def _fill(learner, rng, steps, truncate_at=None):
    """``steps`` acts and records of random observations; env 0 truncated at step ``truncate_at``."""
    frames = []
    for t in range(steps):
        obs = torch.from_numpy(rng.normal(size=(learner.envs, *learner.obs_shape)).astype(np.float32))
        learner.act(obs, 0.5, rng)
        trunc = np.zeros(learner.envs, bool)
        if t == truncate_at:
            trunc[0] = True
        frame = rng.normal(size=(learner.envs, *learner.obs_shape[1:])).astype(np.float32)
        frames.append(frame)
        learner.record(rng.integers(0, learner.n_actions, learner.envs), rng.normal(size=learner.envs).astype(np.float32),
                       rng.random(learner.envs) < 0.1, trunc, frame)
    return frames


def _learner(device="cpu", **kw):
    spec = QNetSpec(3, (2, 5), layer_norm=True)  # stacks of 2 vectors: a truncation's last obs is a shifted stack
    torch.manual_seed(0)
    return PQNLearner(spec, **({"steps": 6, "envs": 4, "obs_dtype": torch.float32, "device": device, "lr": 1e-3,
                               "minibatches": 3, "epochs": 2} | kw))


def test_the_rollout_keeps_what_was_acted_on_and_bootstraps_as_defined():
    """The recorded observations and Q-values are the acting ones; a truncated episode bootstraps
    from its last observation (the acted-on stack shifted by the step's frame), not the next
    episode's first; the returns are the definition's over the rollout's own Q-values."""
    rng = np.random.default_rng(1)
    lrn = _learner()
    frames = _fill(lrn, rng, 6, truncate_at=2)
    last = torch.from_numpy(rng.normal(size=(4, 2, 5)).astype(np.float32))
    lrn.act(last, 0.0, rng)  # the bootstrap's act (the next rollout's first)
    assert lrn.rollout_full and torch.equal(lrn.obs[6], last)
    with torch.no_grad():
        q = lrn.online(lrn.obs.view(-1, 2, 5)).view(7, 4, 3).numpy()
        final = torch.cat([lrn.obs[2, 0, 1:], torch.from_numpy(frames[2][0])[None]])[None]
        q_final = np.zeros((6, 4, 3), np.float32)
        q_final[2, 0] = lrn.online(final)[0].numpy()
    np.testing.assert_allclose(lrn.values.numpy(), q.max(-1), rtol=1e-6)
    want = reference_returns(lrn.rewards, lrn.terminated, lrn.truncated, q, q_final, lrn.gamma, lrn.q_lambda)
    np.testing.assert_allclose(lrn.returns().numpy(), want, rtol=1e-5, atol=1e-5)
    lrn.learn()
    assert lrn.cursor == 0 and torch.equal(lrn.obs[0], last)  # the last observations start the next rollout
    with pytest.raises(RuntimeError, match="acted on already"):
        lrn.act(last, 0.0, rng)


def _reference_step(net, opt, obs, action, target, max_norm):
    q = net(obs).gather(1, action[:, None]).squeeze(1)
    loss = F.mse_loss(q, target)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
    opt.step()


@pytest.mark.parametrize("device", DEVICES)
def test_minibatch_steps_graphed_and_eager_match_a_plain_loop(device):
    """CPU half: the learner's eager epochs equal a plain PyTorch loop over the same shuffled
    minibatches (MSE, clip, RAdam). CUDA half: the graphed epochs (one graph replay per
    minibatch, RAdam's lr a device tensor) match the eager ones, weights and losses."""
    rng = np.random.default_rng(2)
    if device == "cpu":
        lrn = _learner(max_grad_norm=0.5)
        net = copy.deepcopy(lrn.online)
        opt = torch.optim.RAdam(net.parameters(), lr=1e-3)
        _fill(lrn, rng, 6)
        lrn.act(torch.zeros(4, 2, 5), 0.0, rng)
        obs, actions, targets = lrn.obs[:6].reshape(24, 2, 5).clone(), torch.from_numpy(lrn.actions).view(-1), \
            lrn.returns().view(-1)
        gen = torch.Generator().manual_seed(0)  # the learner's seed
        total, n = lrn.learn()
        for _ in range(2):
            order = torch.randperm(24, generator=gen)
            for i in range(3):
                idx = order[i * 8:(i + 1) * 8]
                _reference_step(net, opt, obs[idx], actions[idx], targets[idx], 0.5)
        assert n == 6 and total.item() > 0
        for p, q in zip(lrn.online.parameters(), net.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
        return
    eager, graphed = _learner("cuda", graph=False, compile=False), _learner("cuda", graph=True)
    graphed.online.load_state_dict(eager.online.state_dict())
    assert graphed.graphed and not eager.graphed
    for k in range(3):  # three rollouts: the capture, then replays; the lr annealed between them
        for lrn in (eager, graphed):
            lrn.set_lr(1e-3 * (1 - k / 3))
            _fill(lrn, np.random.default_rng(k), 6)
            lrn.act(torch.zeros(4, 2, 5, device="cuda"), 0.0, np.random.default_rng(k))
        (le, _), (lg, _) = eager.learn(), graphed.learn()
        torch.testing.assert_close(lg, le, rtol=1e-4, atol=1e-5)
    for p, q in zip(graphed.online.parameters(), eager.online.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_learner_refuses_what_it_cannot_run():
    with pytest.raises(ValueError, match="minibatches: expected a divisor of steps"):
        _learner(minibatches=5)
    lrn = _learner()
    with pytest.raises(ValueError, match=r"obs: expected shape \[4, 2, 5\]"):
        lrn.act(torch.zeros(3, 2, 5), 0.1, np.random.default_rng(0))
    with pytest.raises(RuntimeError, match="learn: expected a full rollout"):
        lrn.learn()
    with pytest.raises(ValueError, match="online: expected the Q-network's state_dict"):
        lrn.load_state_dict({"online": {"fc.1.weight": torch.zeros(1)}})


# -- the run ----------------------------------------------------------------------------------
CARTPOLE = dict(env_id="CartPole-v1", algo="pqn", num_envs=4, rollout_steps=8, minibatches=2, frames=640,
                num_workers=0, device="cpu", progress=False, tensorboard=False, reward_bound=None, seed=3,
                torch_threads=1)


@pytest.mark.parametrize("change, message", [
    (dict(prioritized=True), "prioritized: expected False with algo='pqn' (no replay)"),
    (dict(n_step=3), "n_step: expected 1 with algo='pqn' (Q(lambda) returns)"),
    (dict(replay_size=50_000), "replay_size: expected 10000 with algo='pqn' (no replay)"),
    (dict(double=True), "double: expected False with algo='pqn' (no target net)"),
    (dict(save_replay=True), "save_replay: expected False"),
    (dict(pipeline=True), "pipeline: expected False"),
    (dict(ray=True), "ray: expected False with algo='pqn'"),
    (dict(minibatches=3), "minibatches: expected a divisor of rollout_steps * num_envs = 32, got 3"),
    (dict(lr_decay=True, frames=None), "lr_decay: expected False without --frames"),
    (dict(algo="dqn"), "rollout_steps: expected 32 with algo='dqn' (a PQN knob)"),
])
def test_dqn_flags_with_pqn_and_pqn_flags_with_dqn_are_refused(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        TrainConfig(**CARTPOLE | change).validate()


def test_the_cli_refuses_a_dqn_flag_with_pqn_in_one_line(capsys):
    assert main(["train", "--preset", "pqn-cartpole", "--prioritized", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prioritized: expected False with algo='pqn'" in err[0]


def test_the_presets_validate_and_the_dueling_head_comes_free():
    for name in ("pqn-cartpole", "pqn-pong"):
        cfg = preset(name, device="cpu")
        cfg.validate()
        assert cfg.algo == "pqn" and cfg.net_spec(2, (84, 84) if "pong" in name else (4,)).layer_norm
    TrainConfig(**CARTPOLE | dict(dueling=True)).validate()
    assert not TrainConfig().net_spec(6, (84, 84)).layer_norm  # DQN's nets are unchanged


def test_a_pqn_run_writes_checkpoints_that_eval_and_play_and_it_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    tr = Trainer(TrainConfig(**CARTPOLE | dict(out=str(out))))
    try:
        assert isinstance(tr, PQNTrainer) and not hasattr(tr, "buf")
        result = tr.run()
    finally:
        tr.close()
    assert result.frames == 640 and tr.learner.updates == 640 // 32 * 2 * 2 - 2 * 2  # the last rollout's bootstrap is the next run's
    config = json.loads((out / "config.json").read_text())
    assert config["algo"] == "pqn" and config["rollout"]["minibatch_size"] == 16
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["net"]["layer_norm"] and "target" not in ckpt
    assert evaluate(str(out / "best.pt"), episodes=2, epsilon=0.0, device="cpu", echo=lambda s: None)["episodes"] == 2
    play(str(out / "last.pt"), episodes=1, device="cpu", max_steps=20)
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--frames", "1280", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "resuming" in printed and "the rollout in progress starts over" in printed
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["stats"]["frame"] == 1280 and resumed["trainer"]["loss_n"] >= 0
    assert not torch.equal(resumed["online"]["fc.1.weight"], ckpt["online"]["fc.1.weight"])  # it learned on


def _weights_after(cfg: TrainConfig) -> list:
    tr = Trainer(cfg, log=False)
    try:
        for _ in range(cfg.frames // cfg.num_envs):
            tr.step()
        return [p.detach().clone() for p in tr.learner.online.parameters()], tr.learner.updates
    finally:
        tr.close()


def test_overlapped_and_sequential_pqn_runs_train_alike_and_repeat():
    """The act comes before the epochs either way, so --no-overlap trains bit for bit alike, and a
    seeded run repeats itself."""
    cfg = TrainConfig(**CARTPOLE | dict(frames=400))
    a, na = _weights_after(cfg)
    b, nb = _weights_after(TrainConfig(**CARTPOLE | dict(frames=400, overlap=False)))
    c, _ = _weights_after(cfg)
    assert na == nb > 0
    assert all(torch.equal(x, y) for x, y in zip(a, b)) and all(torch.equal(x, y) for x, y in zip(a, c))
