"""The CUDA path against the CPU one, each test in two halves: the CPU half runs everywhere, the
CUDA half (marked gpu) on a machine with a CUDA device. Devices are compared as torch compares
them: ``torch.device("cuda") != torch.device("cuda:0")``, so fastdqn always resolves an index.

The halves: the learner graphed against eager, and eager on CUDA against the CPU, across a resume
(CPU half: a resumed CPU run is the uninterrupted one, bit for bit); the device replay through the
gather kernel against the host replay (CPU half: the device store's code path on CPU tensors);
the acting stacks on CUDA against the stacking rule (CPU half: both CPU paths); a Trainer's steps
on CUDA against the same seeded steps on the CPU (CPU half: two seeded CPU trainers)."""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytest
import torch

from fastdqn.devices import resolve_device
from fastdqn.frames import cuda as frames_cuda
from fastdqn.frames.stack import FrameStacker
from fastdqn.learn.learner import Learner
from fastdqn.learn.model import QNetSpec
from fastdqn.replay.buffer import Batch, ReplayBuffer
from fastdqn.run import TrainConfig, Trainer
from fastdqn.run.checkpoint import load_checkpoint, save_checkpoint
from replay_helpers import fill, stored_after

CUDA_MARKS = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA_MARKS)]


@pytest.fixture
def one_thread():
    """One torch CPU thread, as the trainer tests run (two threads on a busy 2-core machine spin
    against each other: ten times slower per update)."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def assert_trained_alike(got: torch.nn.Module, want: torch.nn.Module, start: list, lr: float, updates: int) -> None:
    """Two nets trained from the weights ``start`` on the same batches, on other devices or
    paths: float sums in another order put them slightly apart, and Adam's normalised steps
    (about lr each) carry that on. So no weight may be more than 2 lr per update off, and all of
    them together under 1% of how far the nets moved (measured on the CPU, contiguous against
    channels_last convolutions, 6 updates at lr 1e-4: 0.05%; a lost Adam state 49%, one update
    skipped 14%, lr 1% higher 2.4%)."""
    moved = off = 0.0
    for (name, p), q, p0 in zip(got.named_parameters(), want.parameters(), start, strict=True):
        p, q, p0 = p.detach().cpu(), q.detach().cpu(), p0.detach().cpu()
        torch.testing.assert_close(p, q, rtol=0, atol=2 * lr * updates, msg=name)
        off, moved = off + float((p - q).abs().sum()), moved + float((q - p0).abs().sum())
    assert off < 0.01 * moved, f"the nets differ by {off / moved:.2%} of how far they moved"


@CUDA_MARKS[0]
@CUDA_MARKS[1]
def test_cuda_without_an_index_is_the_current_device():
    dev = resolve_device("cuda")
    assert dev == torch.device("cuda", torch.cuda.current_device()) == resolve_device("auto")
    assert torch.zeros(1, device=dev).device == dev  # what FrameStacker and to_device compare against


def _stacks_model(first: np.ndarray, k: int, steps: list) -> list[np.ndarray]:
    """The acting stacks after each push, from the rule: the last k frames of the episode, zeros before it."""
    episodes = [[f] for f in first]
    out = []
    for frames, done, resets in steps:
        for e in range(len(episodes)):
            episodes[e] = [resets[e]] if done[e] else episodes[e] + [frames[e]]
        out.append(np.stack([np.stack(([np.zeros_like(first[0])] * k + ep)[-k:]) for ep in episodes]))
    return out


# (device, host_view): the CPU's in-place numpy shift, the GPU's swap-buffer push run on CPU
# tensors (the CPU half of the CUDA path), and that push on CUDA
STACKERS = [pytest.param("cpu", True, id="cpu"), pytest.param("cpu", False, id="cpu-device-path"),
            pytest.param("cuda", False, id="cuda", marks=CUDA_MARKS)]
FRAME_KINDS = [pytest.param(np.uint8, (84, 84), 4, id="pixels"), pytest.param(np.float32, (4,), 1, id="vectors")]


def _random_frames(rng, dtype, shape, n=3):
    if dtype == np.uint8:
        return rng.integers(0, 255, (n, *shape), dtype=np.uint8)
    return rng.standard_normal((n, *shape)).astype(np.float32)


@pytest.mark.parametrize("device, host_view", STACKERS)
@pytest.mark.parametrize("dtype, shape, k", FRAME_KINDS)
@pytest.mark.parametrize("frames_on_device", [False, True])
def test_frame_stacker_matches_the_stacking_rule(device, host_view, dtype, shape, k, frames_on_device):
    """Host frames (copied up through pinned staging) or frames already on the stacker's device
    (the GPU preprocessing's: first, new and reset frames), across episode restarts and a resume
    halfway (the stacks saved to the CPU, loaded into a new stacker): the stacks are the rule's."""
    rng = np.random.default_rng(0)
    first = _random_frames(rng, dtype, shape)
    steps = [(_random_frames(rng, dtype, shape), rng.random(3) < 0.2, _random_frames(rng, dtype, shape))
             for _ in range(20)]
    put = (lambda a: torch.from_numpy(a).to(resolve_device(device))) if frames_on_device else (lambda a: a)

    def stacker(first):
        stack = FrameStacker(put(first), k, device)
        if not host_view:
            stack._device_buffers(host_view=False)
        return stack

    stack = stacker(first)
    assert stack.device == resolve_device(device) and (stack.host is not None) == host_view
    for i, ((frames, done, resets), want) in enumerate(zip(steps, _stacks_model(first, k, steps))):
        if i == 10:  # a resume: last.pt holds the stacks on the CPU
            saved = stack.obs.cpu().clone()
            stack = stacker(np.zeros_like(first))
            stack.load(saved)
            if not host_view:
                stack._device_buffers(host_view=False)
        stack.push(put(frames), done, put(resets))
        assert stack.obs.device == stack.device and stack.obs.dtype == torch.from_numpy(first).dtype
        np.testing.assert_array_equal(stack.obs.cpu().numpy(), want)


@CUDA_MARKS[0]
@CUDA_MARKS[1]
def test_a_capture_that_raises_leaves_no_warm_up_step_applied():
    """make_graphed_update's warm-up steps are real updates; when the capture itself fails they
    are undone all the same: the weights as they were, Adam's moments zero."""
    from fastdqn.learn.graphed import make_graphed_update

    net = torch.nn.Linear(4, 2).cuda()
    opt = torch.optim.Adam(net.parameters(), lr=0.1, capturable=True)
    before = [p.detach().clone() for p in net.parameters()]
    calls = []

    def update(x):
        calls.append(1)
        if len(calls) > 3:  # the capture, after three warm-up steps
            raise RuntimeError("capture failed")
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
        return x

    with pytest.raises(RuntimeError, match="capture failed"):
        make_graphed_update(update, [torch.ones(8, 4, device="cuda")], modules=[net], optimizers=[opt])
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(not v.any() for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor))


# ---------------------------------------------------------------- the learner: graphed, eager, resumed

SPEC, LR, UPDATES, RESUME_AT, B = QNetSpec(6), 1e-4, 6, 3, 16


@functools.lru_cache(maxsize=None)
def _learner_batches() -> tuple:
    """UPDATES + 1 batches of B from a prioritized 3-step replay of random 84x84 frames over
    episode ends: importance weights and per-sample discounts (gamma^k, k < 3 near an end)."""
    buf = ReplayBuffer(600, num_envs=2, seed=4, n_step=3, prioritized=True)
    fill(buf, 120, np.random.default_rng(5), frame=functools.partial(np.random.default_rng(6).integers, 0, 256,
                                                                     (84, 84), np.uint8), end_p=0.15)
    batches = tuple(buf.sample(B, 0.5) for _ in range(UPDATES + 1))
    assert any((b.discount > 0.99 ** 3 + 1e-6).any() for b in batches) and any(b.done.any() for b in batches)
    return batches


def _learn(device: str, graph: bool, restore: str | None = None, tmp_path=None) -> tuple:
    """(losses [UPDATES], priorities [UPDATES, B], the learner, its initial weights) of one update per batch, the
    outputs copied to the CPU as they come (a graph's are the same tensors every call). restore:
    after RESUME_AT updates the learner's state goes through a checkpoint file, as a resume does,
    into a new learner ("fresh", its own initial weights) or back into this one ("live", after an
    update the checkpoint does not hold: a graph captured before the load must not outlive it)."""
    def make(seed):
        torch.manual_seed(seed)
        return Learner(SPEC, device=device, lr=LR, double=True, graph=graph, compile=False)

    batches = _learner_batches()
    learner, losses, priorities = make(0), [], []
    start = [p.detach().to("cpu", copy=True) for p in learner.online.parameters()]
    for i, batch in enumerate(batches[:UPDATES]):
        if restore is not None and i == RESUME_AT:
            save_checkpoint(tmp_path / "last.pt", learner, config={})
            if restore == "live":
                learner.update(batches[UPDATES])
            else:
                learner = make(1)
            learner.load_state_dict(load_checkpoint(tmp_path / "last.pt"))
        loss, pri = learner.update(batch)
        losses.append(loss.detach().to("cpu", copy=True))
        priorities.append(pri.detach().to("cpu", copy=True))
    assert learner.graphed == graph
    return torch.stack(losses), torch.stack(priorities), learner, start


_uninterrupted = functools.lru_cache(maxsize=None)(lambda device: _learn(device, False))

LEARNER_CASES = [  # the resumed run (device, graph) against an uninterrupted eager one on ref_device
    pytest.param("cpu", False, "cpu", id="cpu-eager"),
    pytest.param("cuda", True, "cuda", id="cuda-graphed-vs-cuda-eager", marks=CUDA_MARKS),
    pytest.param("cuda", False, "cpu", id="cuda-eager-vs-cpu-eager", marks=CUDA_MARKS),
]


@pytest.mark.parametrize("device, graph, ref_device", LEARNER_CASES)
@pytest.mark.parametrize("restore", ["fresh", "live"])
def test_a_resumed_learner_updates_as_an_uninterrupted_one(device, graph, ref_device, restore, tmp_path, ieee_fp32,
                                                          one_thread):
    """Prioritized 3-step Double DQN updates, the learner saved and restored halfway: each
    update's loss and priorities, and the final nets, are the uninterrupted eager run's: bit for
    bit on the CPU, within float tolerance graphed (CUDA) against eager and on CUDA against the CPU."""
    got_loss, got_pri, got, _ = _learn(device, graph, restore, tmp_path)
    want_loss, want_pri, want, start = _uninterrupted(ref_device)
    assert got_pri.shape == want_pri.shape == (UPDATES, B) and got_loss.dtype == torch.float32
    if device == ref_device == "cpu":
        assert torch.equal(got_loss, want_loss) and torch.equal(got_pri, want_pri)
        for p, q in zip(got.online.state_dict().values(), want.online.state_dict().values(), strict=True):
            assert torch.equal(p, q)
        for a, b in zip(got.optimizer.state_dict()["state"].values(), want.optimizer.state_dict()["state"].values(),
                        strict=True):  # Adam's moments and step
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    else:
        # measured as assert_trained_alike says: loss 1.5e-6 relative, priorities 4e-6 apart
        torch.testing.assert_close(got_loss, want_loss, rtol=2e-4, atol=1e-6)
        torch.testing.assert_close(got_pri, want_pri, rtol=1e-3, atol=1e-3)
        assert_trained_alike(got.online, want.online, start, LR, UPDATES)
    for p, q in zip(got.target.parameters(), want.target.parameters(), strict=True):  # restored, never synced
        assert torch.equal(p.cpu(), q.cpu())


# ---------------------------------------------------------------- the replay: device store against host store

REPLAY_DEVICES = ["cpu", pytest.param("cuda", marks=[*CUDA_MARKS, pytest.mark.skipif(
    not frames_cuda.available(), reason="fastdqn._cuda is not built: no gather kernel")])]


@pytest.mark.parametrize("device", REPLAY_DEVICES)
@pytest.mark.parametrize("kind", [pytest.param(dict(), id="uniform"),
                                  pytest.param(dict(n_step=3, prioritized=True), id="prioritized-3-step")])
def test_a_device_replay_samples_what_the_host_replay_samples(device, kind):
    """84x84 uint8 frames on the device (on CUDA gathered by fastdqn._cuda's kernel, on the CPU by
    torch indexing) against the C++ host store, both fed one stream of three envs with
    terminations and truncations past the buffer's wrap, same seed: every sampled batch is equal,
    field by field, with the same priorities set on both in between."""
    bufs = [ReplayBuffer(300, num_envs=3, seed=11, device=d, **kind) for d in (None, device)]
    for buf in bufs:
        fill(buf, 150, np.random.default_rng(0), end_p=0.15,
             frame=functools.partial(np.random.default_rng(1).integers, 0, 256, (84, 84), np.uint8))
    host, dev = bufs
    assert len(host) == len(dev) > 200 and dev.device == resolve_device(device)
    rng, padded = np.random.default_rng(2), 0
    for _ in range(6):
        want, got = host.sample(32, 0.5), dev.sample(32, 0.5)
        assert got.obs.device == got.next_obs.device == got.action.device == dev.device
        for name, w, g in zip(Batch._fields, want, got, strict=True):
            assert (w is None) == (g is None) == (name in ("weights", "indices") and not dev.prioritized), name
            if w is not None:
                assert torch.equal(g.cpu(), w), name
        padded += int((want.obs[:, 0] == 0).flatten(1).all(1).sum())
        if dev.prioritized:
            priorities = rng.random(32) * 4
            host.update_priorities(want.indices, priorities)
            dev.update_priorities(got.indices, priorities)
    assert padded > 0  # stacks that reach before their episode's first frame (zeros) were sampled


# ---------------------------------------------------------------- the trainer: a seeded step on CUDA and on the CPU

TRAIN = dict(env_id="PixelCatch-v0", gym_packages=("pixel_catch",), num_envs=2, num_workers=0, replay_size=200,
             replay_start=16, batch_size=8, lr=1e-4, eps_start=1.0, eps_final=1.0, sync_target=18, seed=3,
             progress=False, tensorboard=False, torch_threads=1)
FRAMES = 22  # learning starts at frame 16: the last three steps take 2 updates each, a target sync among them


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", [pytest.param(dict(), id="uniform"),
                                  pytest.param(dict(n_step=3, prioritized=True), id="prioritized-3-step")])
def test_a_trainer_step_on_the_device_is_the_cpu_step(device, kind, tmp_path, ieee_fp32):
    """PixelCatch (84x84 frames), two envs, seeded, random actions (epsilon 1): trainer steps on
    ``device`` (on CUDA: the graphed update, the replay and the acting stacks on the GPU) against
    the same steps of a CPU trainer. Each step's actions and env results are equal, every stored
    transition is equal, and the steps that learn give the same losses and nets: bit for bit
    CPU against CPU, within float tolerance CUDA against CPU."""
    with contextlib.ExitStack() as closing:
        ref, run = (closing.enter_context(contextlib.closing(
            Trainer(TrainConfig(device=d, out=str(tmp_path / name), **TRAIN, **kind), log=False)))
            for d, name in (("cpu", "ref"), (device, "run")))
        if run.learner.device.type == "cuda":  # the CUDA path under test, not a fallback
            assert run.learner.graphed and run.buf.device == run.learner.device
        start = [p.detach().clone() for p in ref.learner.online.parameters()]
        while ref.state.frame < FRAMES:
            want, got = ref.step(), run.step()
            for name, w, g in zip(want.steps._fields, want.steps, got.steps, strict=True):
                np.testing.assert_array_equal(torch.as_tensor(g).cpu().numpy(), w, err_msg=name)
        assert run.state.loss_n == ref.state.loss_n == 6 and run.learner.updates == 6
        stored, expected = stored_after(run, FRAMES), stored_after(ref, FRAMES)
        assert stored.keys() == expected.keys() and len(stored) >= FRAMES - 8
        for key, w in expected.items():
            for name in ("obs", "action", "reward", "next_obs", "done", "discount"):
                assert torch.equal(getattr(stored[key], name).cpu(), getattr(w, name)), (key, name)
        assert not all(torch.equal(p, q) for p, q in zip(ref.learner.target.parameters(), start))  # synced
        got_loss, want_loss = run.state.loss_sum.item(), ref.state.loss_sum.item()
        if device == "cpu":
            assert got_loss == want_loss
            for net in ("online", "target"):
                for p, q in zip(run.learner.state_dict()[net].values(), ref.learner.state_dict()[net].values()):
                    assert torch.equal(p, q), net
        else:
            assert got_loss == pytest.approx(want_loss, rel=2e-4)
            assert_trained_alike(run.learner.online, ref.learner.online, start, TRAIN["lr"], 6)
            assert_trained_alike(run.learner.target, ref.learner.target, start, TRAIN["lr"], 2)  # at frame 18
