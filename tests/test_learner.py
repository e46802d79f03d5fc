"""Learner: TD target on hand-made batches, loss, epsilon schedule, target sync, acting, checkpoints."""

import copy

import numpy as np
import pytest
import torch

from fastdqn.run.checkpoint import load_checkpoint, save_checkpoint
from fastdqn.learn.learner import Learner, epsilon_at, td_loss, td_target
from fastdqn.learn.model import NatureDQN, QNetSpec


def test_td_target_terminal_masking():
    reward = torch.tensor([1.0, 2.0, -1.0])
    done = torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[1.0, 3.0], [5.0, 2.0], [-4.0, -2.0]])
    y = td_target(reward, done, next_q, gamma=0.5)
    # max over actions, zero on terminal: 1 + .5*3, 2, -1 + .5*(-2)
    assert torch.equal(y, torch.tensor([2.5, 2.0, -2.0]))


def test_td_target_double_dqn_uses_online_argmax():
    reward = torch.tensor([1.0, 2.0])
    done = torch.tensor([0.0, 0.0])
    next_q_target = torch.tensor([[1.0, 3.0], [5.0, 2.0]])
    next_q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])  # picks action 0, then 1
    y = td_target(reward, done, next_q_target, 0.5, next_q_online)
    assert torch.equal(y, torch.tensor([1.5, 3.0]))  # not max (2.5, 4.5)
    done = torch.tensor([1.0, 0.0])
    assert torch.equal(td_target(reward, done, next_q_target, 0.5, next_q_online), torch.tensor([1.0, 3.0]))


def _batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    window = torch.randint(0, 256, (b, 5, 84, 84), dtype=torch.uint8, generator=g)
    action = torch.randint(0, 6, (b,), generator=g)
    reward = torch.randint(-1, 2, (b,), generator=g).float()
    done = (torch.rand(b, generator=g) < 0.3).float()
    return window[:, :4], action, reward, window[:, 1:], done


@pytest.mark.parametrize("loss", ["mse", "huber"])
@pytest.mark.parametrize("double", [False, True])
def test_td_loss_matches_by_hand(loss, double):
    torch.manual_seed(0)
    online, target = NatureDQN(6), NatureDQN(6)
    obs, action, reward, next_obs, done = _batch()
    got = td_loss(online, target, obs, action, reward, next_obs, done, gamma=0.99, loss=loss, double=double)
    with torch.no_grad():
        q = online(obs.float() / 255)[torch.arange(8), action]
        nt = target(next_obs.float() / 255)
        a = online(next_obs.float() / 255).argmax(1) if double else nt.argmax(1)
        y = reward + 0.99 * (1 - done) * nt[torch.arange(8), a]
        d = (q - y).abs()
        want = (d**2).mean() if loss == "mse" else torch.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_epsilon_schedule():
    assert epsilon_at(0, 1.0, 0.01, 150_000) == 1.0
    assert epsilon_at(75_000, 1.0, 0.01, 150_000) == pytest.approx(0.505)
    assert epsilon_at(150_000, 1.0, 0.01, 150_000) == pytest.approx(0.01)
    assert epsilon_at(10**7, 1.0, 0.01, 150_000) == pytest.approx(0.01)
    assert epsilon_at(5, 1.0, 0.02, 0) == 0.02
    eps = [epsilon_at(f, 1.0, 0.01, 1000) for f in range(0, 1200, 50)]
    assert all(a >= b for a, b in zip(eps, eps[1:]))


def test_nature_dqn_shape_params_and_scaling():
    net = NatureDQN(6)
    assert sum(p.numel() for p in net.parameters()) == 1_687_206  # 8,224 + 32,832 + 36,928 + 1,606,144 + 3,078
    x = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    out = net(x)
    assert out.shape == (3, 6)
    torch.testing.assert_close(out, net(x.float() / 255))


def test_update_changes_online_only_and_sync_is_in_place():
    torch.manual_seed(0)
    lr = Learner(QNetSpec(6), device="cpu", lr=1e-3)
    target_before = [p.clone() for p in lr.target.parameters()]
    ptrs = [p.data_ptr() for p in lr.target.parameters()]
    loss, errors = lr.update(_batch())
    assert loss.ndim == 0 and torch.isfinite(loss) and errors.shape == (_batch()[0].shape[0],)
    assert all(torch.equal(a, b) for a, b in zip(target_before, lr.target.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(target_before, lr.online.parameters()))
    lr.sync_target()
    assert [p.data_ptr() for p in lr.target.parameters()] == ptrs  # same storage
    assert all(torch.equal(t, o) for t, o in zip(lr.target.parameters(), lr.online.parameters()))
    assert not any(p.requires_grad for p in lr.target.parameters())


def test_act_epsilon_greedy_is_seeded():
    torch.manual_seed(0)
    lr = Learner(QNetSpec(6), device="cpu")
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    greedy = lr.online(obs).argmax(1).numpy()
    np.testing.assert_array_equal(lr.act(obs, 0.0, np.random.default_rng(0)), greedy)
    a1 = lr.act(obs, 1.0, np.random.default_rng(1))
    np.testing.assert_array_equal(a1, lr.act(obs, 1.0, np.random.default_rng(1)))
    assert a1.min() >= 0 and a1.max() < 6


def test_learner_rejects_bad_arguments():
    with pytest.raises(ValueError, match="loss"):
        Learner(QNetSpec(6), device="cpu", loss="l1")
    with pytest.raises(ValueError, match="gamma"):
        Learner(QNetSpec(6), device="cpu", gamma=1.5)
    with pytest.raises(ValueError, match="device"):
        Learner(QNetSpec(6), device="tpu")


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    a = Learner(QNetSpec(6), device="cpu")
    a.update(_batch())
    path = tmp_path / "c.pt"
    save_checkpoint(path, a, config={"env_id": "PongNoFrameskip-v4", "lr": 1e-4}, frame=123, best_reward_100=None)
    state = load_checkpoint(path)
    assert state["config"]["env_id"] == "PongNoFrameskip-v4" and state["stats"]["frame"] == 123
    b = Learner(QNetSpec(6), device="cpu")
    b.load_state_dict(state)
    for x, y in zip(a.online.parameters(), b.online.parameters()):
        assert torch.equal(x, y)
    for x, y in zip(a.target.parameters(), b.target.parameters()):
        assert torch.equal(x, y)
    # the optimizer resumes identically: one more step on the same batch gives the same weights
    a.update(_batch(seed=1))
    b.update(_batch(seed=1))
    for x, y in zip(a.online.parameters(), b.online.parameters()):
        assert torch.equal(x, y)


def test_optimizer_kernel_flags_follow_the_learner_not_the_checkpoint():
    """A CUDA run saves capturable Adam (step as a float32 tensor). Loaded on the CPU (fused, not
    capturable) it must step exactly like a CPU checkpoint of the same state; the checkpoint's lr
    still counts."""
    torch.manual_seed(0)
    a = Learner(QNetSpec(6), device="cpu", lr=3e-4)
    a.update(_batch())
    cpu_state, cuda_like = copy.deepcopy(a.state_dict()), copy.deepcopy(a.state_dict())  # Adam steps `step` in place
    opt = cuda_like["optimizer"]
    for st in opt["state"].values():
        st["step"] = st["step"].to(torch.float32).reshape(())
    for g in opt["param_groups"]:
        g["fused"], g["capturable"], g["foreach"] = None, True, True  # flags this learner does not use
    b, c = Learner(QNetSpec(6), device="cpu"), Learner(QNetSpec(6), device="cpu")
    b.load_state_dict(cuda_like)
    c.load_state_dict(cpu_state)
    group = b.optimizer.param_groups[0]
    assert (group["fused"], group["capturable"], group["foreach"]) == (True, False, None)  # the CPU learner's
    assert b.optimizer.param_groups[0]["lr"] == 3e-4
    b.update(_batch(seed=1))
    c.update(_batch(seed=1))
    for x, y in zip(b.online.parameters(), c.online.parameters()):
        assert torch.equal(x, y)


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match="format"):
        load_checkpoint(other)


@pytest.mark.parametrize("obs_shape", [(4, 84, 84), (1, 4)], ids=["nature", "mlp"])
def test_the_dueling_head_is_value_plus_mean_free_advantage(obs_shape):
    from fastdqn.learn.model import DuelingHead

    torch.manual_seed(0)
    net = QNetSpec(5, obs_shape, "dueling").build()
    heads = [m for m in net.modules() if isinstance(m, DuelingHead)]
    assert len(heads) == 1 and not any(isinstance(m, DuelingHead) for m in QNetSpec(5, obs_shape).build().modules())
    x = torch.randint(0, 255, (7, *obs_shape), dtype=torch.uint8) if len(obs_shape) == 3 else torch.randn(7, *obs_shape)
    q = net(x)
    assert q.shape == (7, 5)
    feats = {}
    heads[0].register_forward_hook(lambda m, inp, out: feats.setdefault("x", inp[0]))
    net(x)
    v, a = heads[0].value(feats["x"]), heads[0].advantage(feats["x"])
    torch.testing.assert_close(q, v + a - a.mean(1, keepdim=True))
    torch.testing.assert_close(q.mean(1, keepdim=True), v)  # the mean advantage is zero: V is the mean Q


def test_a_dueling_learner_fits_a_batch_and_its_checkpoint_plays(tmp_path):
    from fastdqn.play import load_policy

    torch.manual_seed(0)
    learner = Learner(QNetSpec(6, (4, 84, 84), "dueling"), device="cpu", lr=1e-3)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8, generator=g),
             torch.randint(0, 6, (16,), generator=g), torch.rand(16, generator=g),
             torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8, generator=g), torch.zeros(16))
    losses = [float(learner.update(batch)[0]) for _ in range(30)]
    assert losses[-1] < 0.5 * losses[0]
    save_checkpoint(tmp_path / "d.pt", learner, config={})
    model, state = load_policy(tmp_path / "d.pt", torch.device("cpu"))
    assert state["net"] == QNetSpec(6, (4, 84, 84), "dueling").to_dict()
    assert state["net"]["head"] == "dueling" and state["net"]["atoms"] == 1
    torch.testing.assert_close(model(batch[0]), learner.online(batch[0]))


def test_the_td_target_bootstraps_with_each_samples_discount():
    g = torch.Generator().manual_seed(0)
    r, done, nq = torch.rand(8, generator=g), (torch.rand(8, generator=g) < 0.3).float(), torch.rand(8, 4, generator=g)
    one_step = td_target(r, done, nq, 0.99)
    torch.testing.assert_close(td_target(r, done, nq, 0.99, discount=torch.full((8,), 0.99)), one_step, rtol=0, atol=0)
    k = torch.tensor([1, 2, 3, 3, 1, 2, 3, 1], dtype=torch.float32)
    got = td_target(r, done, nq, 0.99, discount=0.99 ** k)
    torch.testing.assert_close(got, r + 0.99 ** k * (1 - done) * nq.max(1).values)


def test_an_n_step_replay_batch_trains_the_learner():
    from fastdqn.replay.buffer import ReplayBuffer

    buf = ReplayBuffer(200, frame_shape=(84, 84), n_step=3, gamma=0.9, seed=0)
    rng = np.random.default_rng(0)
    buf.start(rng.integers(0, 255, (84, 84), dtype=np.uint8))
    for i in range(60):
        buf.add(int(rng.integers(6)), float(rng.random()), rng.integers(0, 255, (84, 84), dtype=np.uint8), i % 25 == 24)
        if i % 25 == 24:
            buf.start(rng.integers(0, 255, (84, 84), dtype=np.uint8))
    b = buf.sample(16)
    assert b.obs.shape == b.next_obs.shape == (16, 4, 84, 84) and set(b.discount.tolist()) <= {float(np.float32(0.9 ** k)) for k in (1, 2, 3)}
    learner = Learner(QNetSpec(6), device="cpu", lr=1e-3)
    losses = [float(learner.update(b)[0]) for _ in range(20)]
    assert losses[-1] < losses[0]


def test_importance_weights_scale_each_samples_loss_and_td_errors_come_back():
    torch.manual_seed(0)
    online, target = NatureDQN(6), NatureDQN(6)
    g = torch.Generator().manual_seed(2)
    obs, nxt = (torch.randint(0, 255, (8, 4, 84, 84), dtype=torch.uint8, generator=g) for _ in range(2))
    action, reward, done = torch.randint(0, 6, (8,), generator=g), torch.rand(8, generator=g), torch.zeros(8)
    discount, weights = torch.full((8,), 0.99), torch.rand(8, generator=g)
    for kind, fn in (("mse", torch.nn.functional.mse_loss), ("huber", torch.nn.functional.smooth_l1_loss)):
        loss, errors = td_loss(online, target, obs, action, reward, nxt, done, discount, weights, gamma=0.99,
                               loss=kind, errors=True)
        q = online(obs).gather(1, action[:, None])[:, 0]
        y = td_target(reward, done, target(nxt), 0.99, discount=discount)
        torch.testing.assert_close(loss, (weights * fn(q, y, reduction="none")).mean())
        torch.testing.assert_close(errors, (q - y).abs())
        plain = td_loss(online, target, obs, action, reward, nxt, done, discount, gamma=0.99, loss=kind)
        torch.testing.assert_close(plain, fn(q, y))
    learner = Learner(QNetSpec(6), device="cpu")
    _, priorities = learner.update((obs, action, reward, nxt, done, discount, weights))
    assert priorities.shape == (8,) and (priorities >= 0).all()


def test_bf16_precision_keeps_weights_and_targets_fp32_and_tracks_fp32():
    from fastdqn.learn.learner import native_bf16

    if not native_bf16(torch.device("cpu")):
        with pytest.raises(ValueError, match="precision: expected 'fp32' on cpu, which has no native bf16"):
            Learner(QNetSpec(6), device="cpu", precision="bf16")
        return
    torch.manual_seed(0)
    fp32, bf16 = Learner(QNetSpec(6), device="cpu"), Learner(QNetSpec(6), device="cpu", precision="bf16")
    bf16.online.load_state_dict(fp32.online.state_dict())
    bf16.target.load_state_dict(fp32.target.state_dict())
    g = torch.Generator().manual_seed(1)
    obs = torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8, generator=g)
    nxt = torch.randint(0, 255, (16, 4, 84, 84), dtype=torch.uint8, generator=g)
    batch = (obs, torch.randint(0, 6, (16,), generator=g), torch.randn(16, generator=g), nxt, torch.zeros(16))
    (a, _), (b, errors) = fp32.update(batch), bf16.update(batch)
    assert b.dtype == torch.float32 and errors.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in bf16.online.parameters())
    assert b.item() == pytest.approx(a.item(), rel=0.05)  # bf16 keeps 8 mantissa bits: close, not equal
    assert b.item() != a.item()  # and autocast did run in bf16


def test_a_precision_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match=r"precision: expected one of \('fp32', 'bf16'\), got 'fp16'"):
        Learner(QNetSpec(6), device="cpu", precision="fp16")
    from fastdqn.run import TrainConfig

    with pytest.raises(ValueError, match=r"precision: expected one of \('fp32', 'bf16'\), got 'fp16'"):
        TrainConfig(precision="fp16").validate()


@pytest.mark.parametrize("device, compile, graph, want", [
    ("cuda", None, None, (True, False)),  # the CUDA default: one graph replay per update
    ("cuda", True, None, (False, True)),  # --compile on CUDA: compiled, not graphed (no error about a graph)
    ("cuda", None, False, (False, True)),  # --no-graph: compiled by default
    ("cuda", False, False, (False, False)),
    ("cpu", None, None, (False, False)),
    ("cpu", True, None, (False, True))])
def test_update_mode_resolves_graph_and_compile_per_device(device, compile, graph, want):
    """How an update runs, decided without a GPU (fastdqn train --compile on CUDA once raised an
    error about graph=True, which the user never set)."""
    from fastdqn.learn.learner import update_mode

    assert update_mode(torch.device(device), compile, graph) == want


@pytest.mark.parametrize("device, compile, graph, match", [
    ("cpu", None, True, r"graph: expected False on cpu \(CUDA graphs need a CUDA device\), got True"),
    ("cuda", True, True, "compile: expected False or None with graph=True")])
def test_update_mode_refuses_what_cannot_run(device, compile, graph, match):
    from fastdqn.learn.learner import update_mode

    with pytest.raises(ValueError, match=match):
        update_mode(torch.device(device), compile, graph)
