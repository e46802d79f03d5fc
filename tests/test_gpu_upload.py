"""The CUDA path's host-to-device traffic (issue 23): the device replay's writes, the collector's
one upload of each step's frames, the graphed greedy forward of acting and cuDNN's benchmark
mode. As in test_gpu_path.py each check has a CPU half, the same code with CPU tensors, and a
CUDA half (marked gpu). "No sync" is asserted under ``torch.cuda.set_sync_debug_mode("error")``,
which raises at a synchronizing call (``.cpu()``, a blocking copy) but does not see the driver
copying a pageable buffer synchronously: that one the profiler names ("Pageable")."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastdqn.devices import resolve_device, upload
from fastdqn.learn.acting import GraphedGreedy
from fastdqn.learn.learner import Learner, epsilon_greedy
from fastdqn.learn.model import QNetSpec
from fastdqn.replay.buffer import ReplayBuffer
from fastdqn.run import TrainConfig, Trainer
from replay_helpers import stored_after

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]
PONG_STEPS = dict(num_envs=3, num_workers=2, eps_start=1.0, eps_final=1.0, progress=False, tensorboard=False,
                  torch_threads=1, seed=5, sticky_actions=0.0, max_episode_frames=401, env_backend="ale")


@contextlib.contextmanager
def no_sync(device):
    """On CUDA: any synchronizing call inside raises RuntimeError."""
    if resolve_device(device).type != "cuda":
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(0)


def memcpys(fn) -> list[str]:
    """The names of the memcpys ``fn`` makes on the GPU, e.g. 'Memcpy HtoD (Pinned -> Device)'."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.key for e in prof.key_averages() if e.key.startswith("Memcpy")]


def assert_uploads_pinned(names: list[str]) -> None:
    assert any("HtoD" in n for n in names), names  # the check is not vacuous
    assert not any("Pageable" in n for n in names), names


# -- 1. the device replay's writes ------------------------------------------------------------
def _plan(device, rng, steps=40, n=3, shape=(6, 5)) -> list:
    """Writes of random episodes, one env at a time every 4th step: (op, args, (source, frames,
    the frames on ``device``)), the sources in turn a host array, a CPU tensor, a device tensor."""
    plan, k = [], 0

    def src(m):
        nonlocal k
        k += 1
        arr = rng.integers(0, 256, (m, *shape), dtype=np.uint8)
        return ("numpy", "tensor", "device")[k % 3], arr, torch.from_numpy(arr).to(device)

    plan.append(("start_many", None, src(n)))
    for step in range(steps):
        ends = rng.random(n) < 0.15
        if step % 4 == 3:
            plan += [("add", (int(rng.integers(6)), float(rng.standard_normal()), bool(ends[e]), False, e), src(1))
                     for e in range(n)]
        else:
            plan.append(("add_many", (rng.integers(0, 6, n), rng.standard_normal(n).astype(np.float32), ends),
                         src(n)))
        done = np.flatnonzero(ends)
        if len(done) == 1:
            plan.append(("start", int(done[0]), src(1)))
        elif len(done):
            plan.append(("start_many", done, src(len(done))))
    return plan


def _feed(buf, plan, host_only: bool = False) -> None:
    """The plan's writes, each from its source; host arrays through one array refilled every
    call, as an env refills its own (``host_only``: all of them, for the host store)."""
    frames = np.empty((3, 6, 5), np.uint8)
    for op, args, (kind, arr, dev) in plan:
        if kind == "numpy" or host_only:
            frames[:len(arr)] = arr
            x = frames[:len(arr)]
        else:
            x = dev if kind == "device" else torch.from_numpy(arr)
        if op == "start_many":
            buf.start_many(x, envs=args)
        elif op == "add_many":
            actions, rewards, terminated = args
            buf.add_many(actions, rewards, x, terminated)
        elif op == "start":
            buf.start(x[0], env=args)
        else:
            a, r, term, trunc, e = args
            buf.add(a, r, x[0], term, trunc, env=e)


@pytest.mark.parametrize("device", DEVICES)
def test_a_device_replay_stores_from_every_source_what_the_host_replay_stores(device):
    """numpy frames (one array the caller refills), CPU tensors and device tensors, through
    start/add/start_many/add_many: the device store holds what the host store holds. On CUDA
    the writes make no synchronizing call and upload nothing pageable, and the stream is held
    back first, so every copy is still in flight when the caller refills its array."""
    dev = resolve_device(device)
    plan = _plan(dev, np.random.default_rng(0))
    host = ReplayBuffer(200, num_envs=3, frame_shape=(6, 5), seed=0)
    on_dev = ReplayBuffer(200, num_envs=3, frame_shape=(6, 5), seed=0, device=dev)
    _feed(host, plan, host_only=True)

    def feed():
        if dev.type == "cuda":
            torch.cuda._sleep(50_000_000)  # the copies queue behind this
        with no_sync(dev):
            _feed(on_dev, plan)

    if dev.type == "cuda":
        assert_uploads_pinned(memcpys(feed))
    else:
        feed()
    assert on_dev.frames_written() == host.frames_written()
    n = 0
    for env, written in enumerate(host.frames_written()):
        for t in range(written):
            try:
                want = host.transition(env, t)
            except ValueError:
                continue
            got = on_dev.transition(env, t)
            for name in ("obs", "action", "reward", "next_obs", "done"):
                assert torch.equal(getattr(got, name).cpu(), getattr(want, name)), (env, t, name)
            n += 1
    assert n > 60


def test_upload_copies_to_the_cpu_and_keeps_dtype_and_shape():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    t = upload(a, torch.device("cpu"))
    a[:] = 0  # the caller refills its array: the upload kept its own copy
    assert t.dtype == torch.uint8 and t.shape == (3, 4) and t.sum().item() == sum(range(12))
    with pytest.raises(TypeError, match="host: expected a numpy array or a tensor, got list"):
        upload([1, 2], torch.device("cpu"))


# -- 2. the collector's one upload ----------------------------------------------------------
def _trainer(tmp_path, name, **kw) -> Trainer:
    cfg = TrainConfig(out=str(tmp_path / name), replay_size=400, replay_start=10**6, **(PONG_STEPS | kw))
    return Trainer(cfg, log=False)


def _uploading_on_the_cpu(t: Trainer, to_replay: bool) -> None:
    """A CPU Trainer's collector on the code the CUDA one runs, with CPU tensors: one upload a
    step, the stacks' device branch, and (to_replay) a replay that lives on the "device"."""
    g = t.collector.groups[0]
    g.upload, g.to_replay = True, to_replay
    g.stack._device_buffers(host_view=False)
    if to_replay:
        b = t.buf
        t.buf = ReplayBuffer(b.capacity, num_envs=b.num_envs, frame_shape=b.frame_shape, stack=b.stack,
                             dtype=str(b.dtype), seed=0, device="cpu")


def _spy(t: Trainer) -> list:
    """[(what the stacks were pushed, what the replay's add_many got)] of each step."""
    g, seen = t.collector.groups[0], []
    push, add_many = g.stack.push, t.buf.add_many

    def spy_push(frames, *args):
        seen.append([frames, None])
        return push(frames, *args)

    def spy_add_many(actions, rewards, next_frames, *args, **kw):
        seen[-1][1] = next_frames
        return add_many(actions, rewards, next_frames, *args, **kw)

    g.stack.push, t.buf.add_many = spy_push, spy_add_many
    return seen


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("replay_device", ["auto", "cpu"])
def test_each_steps_frames_cross_once_and_the_run_stores_what_the_cpu_run_stores(tmp_path, device, replay_device):
    """Random actions across episode ends (truncations at 401 frames): the stacks are pushed the
    step's uploaded frames, and a replay on the device is given that same tensor (a host replay
    the host array); the transitions stored and the acting stacks are the default CPU run's."""
    ref = _trainer(tmp_path, "ref", device="cpu")
    t = _trainer(tmp_path, "t", device=device, replay_device=replay_device)
    try:
        on_device = replay_device == "auto"
        if device == "cpu":
            _uploading_on_the_cpu(t, on_device)
        assert t.collector.groups[0].upload and t.collector.groups[0].to_replay is on_device
        seen = _spy(t)
        while t.state.frame < 330:  # in lockstep: the acting stacks after every step, restarts included
            ref.step()
            t.step()
            assert torch.equal(t.collector.obs.cpu(), ref.collector.obs), t.state.frame
        want, got = stored_after(ref, 330), stored_after(t, 330)
        assert len(seen) == 110 and len(got) >= 320 and got.keys() == want.keys()
        for pushed, stored in seen:
            assert isinstance(pushed, torch.Tensor) and pushed.device == t.collector.groups[0].stack.device
            if on_device:  # the same memory: a view of it
                assert isinstance(stored, torch.Tensor) and stored.data_ptr() == pushed.data_ptr()
            else:
                assert isinstance(stored, np.ndarray)
        for key, a in want.items():
            for name in ("obs", "action", "reward", "next_obs", "done", "discount"):
                assert torch.equal(getattr(got[key], name).cpu(), getattr(a, name)), (key, name)
    finally:
        ref.close()
        t.close()


def test_after_an_exact_resume_without_its_replay_the_refill_starts_at_the_acting_stacks(tmp_path):
    """The streams' first frames come from the host (no copy back from the device): after an exact
    resume, the loaded stacks' newest frames, the ones the first action is taken on."""
    from fastdqn.run import train
    from fastdqn.run.resume import resume_config

    small = dict(num_envs=2, num_workers=1, env_backend="process", progress=False, torch_threads=1, seed=3,
                 replay_size=500, replay_start=10**6, sticky_actions=0.0)
    train(TrainConfig(out=str(tmp_path / "run"), frames=60, **small))
    cfg, ckpt = resume_config(str(tmp_path / "run"), {"frames": 120}, TrainConfig)
    t = Trainer(cfg, resume=ckpt, log=False)
    try:
        acted = t.collector.obs.clone()
        assert acted[:, :-1].any()  # the loaded stacks, not a reset's zeros
        t.step()
        for env in range(2):
            assert torch.equal(t.buf.transition(env, 0).obs[0, -1], acted[env, -1])
    finally:
        t.close()


@CUDA_MARKS[0]
@CUDA_MARKS[1]
@pytest.mark.parametrize("replay_device", ["auto", "cpu"])
def test_a_cuda_trainer_step_makes_no_synchronizing_call_and_uploads_nothing_pageable(tmp_path, replay_device):
    """Acting (epsilon 0.5: the graphed forward runs), storing and restarting episodes; before
    learning starts. The acting graph's one wait is on an event, which the debug mode allows."""
    t = _trainer(tmp_path, "s", device="cuda", replay_device=replay_device, eps_start=0.5, eps_final=0.5)
    try:
        t.step()  # the streams started
        t.learner.act(t.collector.obs, 0.0, np.random.default_rng(0))  # the acting graph captured

        def steps():
            with no_sync("cuda"):
                while t.state.frame < 330:  # past the truncations
                    t.step()

        names = memcpys(steps)
        assert_uploads_pinned(names)
        assert t.learner._greedy is not None and len(t.learner._greedy._graphs) == 1
    finally:
        t.close()


# -- 3. acting ------------------------------------------------------------------------------
def test_acting_on_the_cpu_stays_eager_and_the_graphed_actor_falls_back_to_it():
    learner = Learner(QNetSpec(6), device="cpu")
    assert learner._greedy is None  # no actor object on the CPU: the eager rule (test_learner checks its actions)
    obs = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    want = learner.online(obs).argmax(1).numpy()
    np.testing.assert_array_equal(GraphedGreedy(learner.online)(obs), want)
    with pytest.raises(TypeError, match="obs: expected a torch.Tensor, got ndarray"):
        GraphedGreedy(learner.online)(obs.numpy())
    calls = []

    def greedy(o):
        calls.append(o)
        return want

    # the one rule with a given greedy: the same draws, the greedy actions only where not exploring
    a = epsilon_greedy(learner.online, obs, 6, 0.5, np.random.default_rng(3), greedy=greedy)
    np.testing.assert_array_equal(a, epsilon_greedy(learner.online, obs, 6, 0.5, np.random.default_rng(3)))
    epsilon_greedy(learner.online, obs, 6, 1.0, np.random.default_rng(3), greedy=greedy)
    assert len(calls) == 1  # all exploring: the net does not run


def _batch(device, b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    window = torch.randint(0, 256, (b, 5, 84, 84), dtype=torch.uint8, generator=g)
    tensors = (window[:, :4], torch.randint(0, 6, (b,), generator=g), torch.randn(b, generator=g),
               window[:, 1:], torch.zeros(b))
    return tuple(x.to(device) for x in tensors)


@pytest.mark.parametrize("device", DEVICES)
def test_updates_and_loads_write_the_online_weights_in_place(device):
    """What a captured acting graph relies on to read the live weights: an update (fused Adam;
    graphed on CUDA) and load_state_dict leave every parameter at its address."""
    torch.manual_seed(0)
    learner = Learner(QNetSpec(6), device=device, graph=None)
    params = list(learner.online.parameters())
    ptrs = [p.data_ptr() for p in params]
    before = [p.detach().clone() for p in params]
    for seed in range(3):
        learner.update(_batch(device, seed=seed))
    assert not all(torch.equal(a, b) for a, b in zip(before, params))
    other = Learner(QNetSpec(6), device=device)
    learner.load_state_dict(other.state_dict())
    assert all(a is b for a, b in zip(learner.online.parameters(), params))
    assert [p.data_ptr() for p in params] == ptrs
    assert all(torch.equal(a, b) for a, b in zip(params, other.online.parameters()))


def _assert_greedy(learner: Learner, obs: torch.Tensor, actions: np.ndarray) -> None:
    """``actions`` are the live online net's argmax (up to rounding between two kernels' Q-values)."""
    with torch.no_grad(), learner._autocast():
        q = learner.online(obs).float()
    chosen = q.gather(1, torch.as_tensor(actions, device=q.device)[:, None]).squeeze(1)
    tol = (1e-4 if learner.precision == "fp32" else 1e-2) * q.abs().max()
    assert (chosen >= q.max(1).values - tol).all(), (actions, q.argmax(1))


@CUDA_MARKS[0]
@CUDA_MARKS[1]
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_graphed_acting_follows_new_observations_and_weights_without_a_sync(precision):
    torch.manual_seed(0)
    learner = Learner(QNetSpec(6), device="cuda", graph=None, precision=precision)
    rng = np.random.default_rng(0)
    obs = [torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8, device="cuda") for _ in range(3)]
    _assert_greedy(learner, obs[0], learner.act(obs[0], 0.0, rng))  # captures
    graph = learner._greedy._graphs[obs[0].shape, obs[0].dtype]
    with no_sync("cuda"):
        got = [learner.act(o, 0.0, rng) for o in obs]
    for o, a in zip(obs, got):
        _assert_greedy(learner, o, a)
    for seed in range(3):  # graphed updates, then another net's weights: read live, no recapture
        learner.update(_batch("cuda", seed=seed))
    learner.load_state_dict(Learner(QNetSpec(6), device="cuda").state_dict())
    with no_sync("cuda"):
        got = [learner.act(o, 0.0, rng) for o in obs]
    for o, a in zip(obs, got):
        _assert_greedy(learner, o, a)
    assert learner._greedy._graphs == {(obs[0].shape, obs[0].dtype): graph}
    assert graph.q.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)  # autocast was captured
    with pytest.raises(RuntimeError, match="synchroniz"), no_sync("cuda"):  # the instrument: eager acting syncs
        epsilon_greedy(learner.online, obs[0], 6, 0.0, rng)


# -- 4. cuDNN's benchmark mode --------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_cudnn_benchmark_is_on_for_a_cuda_run_only_and_put_back_at_close(tmp_path, device):
    torch.backends.cudnn.benchmark = False
    t = _trainer(tmp_path, "c", device=device)
    try:
        assert torch.backends.cudnn.benchmark is (resolve_device(device).type == "cuda")
    finally:
        t.close()
    assert torch.backends.cudnn.benchmark is False


def test_importing_fastdqn_leaves_cudnn_benchmark_off():
    code = "import torch, fastdqn.run, fastdqn.learn, fastdqn.replay; print(torch.backends.cudnn.benchmark)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
