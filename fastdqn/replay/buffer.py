"""Frame-deduplicating replay buffer: each frame is stored once, stacks are rebuilt at sample time.

The storage, the sampling, the rules of a valid transition and the check of every option's value
live in C++ (``fastdqn._core``: ``ReplayOptions``, ``ReplayCore``); this module checks argument
types, owns the output tensors and, with ``device=``, keeps the frames in a torch tensor there.
"""

from __future__ import annotations

import contextlib
import numbers
import threading
from typing import NamedTuple, Sequence

import numpy as np
import torch

from fastdqn import _native
from fastdqn.devices import resolve_device, upload
from fastdqn.frames import cuda as frames_cuda
from fastdqn.replay import gather, state as replay_state


class Batch(NamedTuple):
    """A sampled batch. ``obs`` and ``next_obs`` are two views of one window: [B, stack+1, *frame]
    for 1-step returns, [B, 2*stack, *frame] (the two stacks side by side) for n-step ones. Pinned
    (CUDA there) or on a device they are slices of one window tensor; otherwise each is a tensor
    over its part of one numpy window (whose storage therefore does not span the other's)."""

    obs: torch.Tensor       # [B, stack, *frame] of the buffer's dtype (uint8 pixels, float32 vectors)
    action: torch.Tensor    # int64 [B]
    reward: torch.Tensor    # float32 [B]: r_t, or the discounted sum of the next k rewards (n-step)
    next_obs: torch.Tensor  # [B, stack, *frame]: the stack at t+k
    done: torch.Tensor      # float32 [B], 1.0 only when the episode terminated within the k steps
    discount: torch.Tensor  # float32 [B]: gamma^k, what the TD target multiplies the bootstrap by
    weights: torch.Tensor | None = None  # float32 [B], prioritized: importance weights, largest possible = 1
    indices: torch.Tensor | None = None  # int64 [B] (CPU), prioritized: for update_priorities


def _flag(value, name: str) -> bool:
    """A bool as envs return it (bool, np.bool_, 0 or 1); None, strings and arrays are mistakes."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise TypeError(f"{name}: expected a bool, got {value!r}")


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    return int(value)


def _positive_int(value, name: str, minimum: int = 1) -> int:
    """An argument of a call (not an option: those the core checks)."""
    value = _int(value, name)
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return value


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a float, got {type(value).__name__}")
    return float(value)


def _str(value, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, got {type(value).__name__}")
    return str(value)


class _Layout(NamedTuple):
    """One batch size's output block (byte offsets) and the shapes of its views, from the options."""

    fields: tuple        # (numpy dtype, torch dtype, offset) of each Batch field after next_obs
    slots_at: int
    frames_at: int
    nbytes: int
    window_shape: tuple  # [B, window, *frame]
    dtype: np.dtype
    torch_dtype: torch.dtype
    stack: int
    width: int           # frames per row (the core's window)
    prioritized: bool


class BatchSlot(NamedTuple):
    """``batch``: a Batch's tensors at fixed addresses (views of ``block``), refilled in place by
    ``ReplayBuffer.sample(out=slot)``; made by ``ReplayBuffer.batch_slot``."""

    batch: Batch
    block: torch.Tensor   # uint8 [nbytes], laid out as _Layout says
    slots: torch.Tensor   # int64 [B, window]: the window's frame slots (read by a device store's gather)
    window: torch.Tensor  # [B, window, *frame]: obs and next_obs are views of it
    layout: _Layout
    owner: object         # the ReplayBuffer it belongs to
    host: tuple | None    # a CPU block's numpy views (slots, window, fields) for the core to fill, made once


def _numpy_views(block: np.ndarray, b: int, lay: _Layout, frames: bool) -> tuple:
    """(slots, window or None, fields in Batch order): numpy views of one block, for the core to fill."""
    nd = np.ndarray
    slots = nd((b, lay.width), np.int64, block, lay.slots_at)
    fields = [nd((b,), dt, block, at) for dt, _, at in lay.fields]
    window = nd(lay.window_shape, lay.dtype, block, lay.frames_at) if frames else None
    return slots, window, fields


class ReplayBuffer:
    """Uniform replay over ``num_envs`` independent episode streams.

    Args:
        capacity: transitions kept over all streams (each stream gets ``capacity // num_envs``,
            the remainder spread over the first streams).
        num_envs: independent episode streams (one per vector env).
        frame_shape: shape of one preprocessed frame (84x84 pixels, or a vector observation's shape).
        dtype: of the frames, ``"uint8"`` (pixels) or ``"float32"`` (vector observations, the trainer stacks 1).
        stack: frames per observation.
        pad: how a stack that reaches before its episode's first frame is filled: ``"zeros"``
            (the book chapter's convention) or ``"repeat"`` (the first frame repeated).
        seed: seed of the sampling RNG (None: random).
        device: None keeps frames in C++ host memory and returns CPU batches (pinned when CUDA is
            available). A torch device (e.g. ``"cuda"``) keeps the frames there and samples on it.
        n_step, gamma: a sample of t returns k = min(n_step, steps to its episode's end) steps:
            the discounted sum of rewards t..t+k-1, the stack at t+k, done when the episode
            terminated within them, and ``discount`` gamma^k. A transition is sampled only once
            its k steps are stored (n_step 1: the book chapter's 1-step transition, discount gamma).
        prioritized, alpha, eps: proportional prioritized replay (Schaul et al. 2016): a
            transition is drawn with probability p^alpha / sum p^alpha, p = its last
            ``update_priorities`` value + eps (a new one gets the largest p so far); ``sample``
            then also returns importance ``weights`` and the ``indices`` to update.
    """

    def __init__(self, capacity: int, *, num_envs: int = 1, frame_shape: Sequence[int] = (84, 84), stack: int = 4,
                 pad: str = "zeros", seed: int | None = None, device: str | torch.device | None = None,
                 dtype: str = "uint8", n_step: int = 1, gamma: float = 0.99, prioritized: bool = False,
                 alpha: float = 0.6, eps: float = 1e-6):
        core = _native.core()  # NativeModuleMissing (an ImportError) says where fastdqn came from
        if not isinstance(frame_shape, (tuple, list)):
            raise TypeError(f"frame_shape: expected a tuple of ints, got {frame_shape!r}")
        if isinstance(dtype, (type, np.dtype)):
            dtype = str(np.dtype(dtype))
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)  # the core folds it to 64 bits
        self.device = None if device is None else resolve_device(device)
        # Types here; every value is checked once, in C++ (ValueError naming the option).
        self._core = core.ReplayCore(core.ReplayOptions(
            capacity=_int(capacity, "capacity"), num_envs=_int(num_envs, "num_envs"),
            frame_shape=[_int(d, "frame_shape") for d in frame_shape], dtype=_str(dtype, "dtype"),
            stack=_int(stack, "stack"), pad=_str(pad, "pad"), seed=_int(seed, "seed"),
            store_frames=self.device is None, n_step=_int(n_step, "n_step"), gamma=_real(gamma, "gamma"),
            prioritized=_flag(prioritized, "prioritized"), alpha=_real(alpha, "alpha"), eps=_real(eps, "eps")))
        self._options = self._core.options  # a copy of the core's, which never change
        self._frames = None
        # Device store: the C++ bookkeeping publishes a slot before Python writes its frame, so a
        # sampler on another thread must not run between the two (the host store copies under its mutex).
        self._device_lock = threading.Lock()
        if self.device is not None:
            self._frames = torch.zeros((self.capacity, *self.frame_shape), dtype=self._torch_dtype, device=self.device)
        self._pin = self.device is None and torch.cuda.is_available()
        self._layouts: dict[int, _Layout] = {}  # batch size -> its _layout()

    # -- size -------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of transitions that can be sampled now."""
        return len(self._core)

    capacity = property(lambda self: self._options.capacity, doc="transitions kept over all streams")
    num_envs = property(lambda self: self._options.num_envs)
    frame_shape = property(lambda self: tuple(self._options.frame_shape))
    dtype = property(lambda self: np.dtype(self._options.dtype))
    stack = property(lambda self: self._options.stack)
    pad = property(lambda self: self._options.pad)
    n_step = property(lambda self: self._options.n_step)
    gamma = property(lambda self: self._options.gamma)
    prioritized = property(lambda self: self._options.prioritized)
    alpha = property(lambda self: self._options.alpha)
    eps = property(lambda self: self._options.eps)
    _torch_dtype = property(lambda self: getattr(torch, self._options.dtype))

    @property
    def nbytes(self) -> int:
        """All memory the buffer holds (frames, per-transition fields, bookkeeping)."""
        return self._core.nbytes + (0 if self._frames is None else self._frames.nbytes)

    def __repr__(self) -> str:
        where = "host" if self.device is None else str(self.device)
        return (f"ReplayBuffer(len={len(self)}, capacity={self.capacity}, num_envs={self.num_envs}, "
                f"frame_shape={self.frame_shape}, dtype={self.dtype}, stack={self.stack}, frames on {where})")

    # -- writing ----------------------------------------------------------------------------
    def start(self, frame, env: int = 0) -> None:
        """Begin an episode on stream ``env`` with its first frame."""
        env = self._env(env)
        if self._frames is None:
            self._core.start(frame, env)
        else:
            frame = self._device_frames(frame, "frame", ())
            with self._device_lock:
                self._frames[self._core.start(None, env)] = frame

    def add(self, action: int, reward: float, next_frame, terminated: bool, truncated: bool = False,
            env: int = 0) -> None:
        """Record the transition from the stream's last frame. After ``terminated`` or
        ``truncated`` the episode is over and the next call on this stream must be ``start``."""
        env = self._env(env)
        if isinstance(action, bool) or not isinstance(action, numbers.Integral):
            raise TypeError(f"action: expected an int, got {type(action).__name__}")
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real):
            raise TypeError(f"reward: expected a float, got {type(reward).__name__}")
        terminated, truncated = _flag(terminated, "terminated"), _flag(truncated, "truncated")
        if self._frames is None:
            self._core.add(int(action), float(reward), next_frame, terminated, truncated, env)
        else:
            next_frame = self._device_frames(next_frame, "next_frame", ())
            with self._device_lock:
                self._frames[self._core.add(int(action), float(reward), None, terminated, truncated, env)] = next_frame

    def start_many(self, frames, envs: Sequence[int] | None = None) -> None:
        """Begin episodes on several streams: ``frames`` [K, H, W] for ``envs`` (default: all, in order)."""
        envs, count = self._streams(envs)
        if self._frames is None:
            self._core.start_many(frames, envs, count)
        else:
            frames = self._device_frames(frames, "frames", (count,))
            with self._device_lock:
                slots = self._core.start_many(None, envs, count)
                self._frames.index_copy_(0, upload(slots, self.device), frames)  # no sync: see upload

    def add_many(self, actions, rewards, next_frames, terminated, truncated=None,
                 envs: Sequence[int] | None = None) -> None:
        """Record one transition on several streams: arrays of length K, frames [K, H, W], for
        ``envs`` (distinct stream indices; default: every stream, in order, K = ``num_envs``).
        All or nothing: a rejected call stores nothing."""
        envs, count = self._streams(envs)
        if self._frames is None:
            self._core.add_many(actions, rewards, next_frames, terminated, truncated, envs, count)
        else:
            next_frames = self._device_frames(next_frames, "next_frames", (count,))
            with self._device_lock:
                slots = self._core.add_many(actions, rewards, None, terminated, truncated, envs, count)
                self._frames.index_copy_(0, upload(slots, self.device), next_frames)

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, batch_size: int, beta: float = 0.4, *, out: BatchSlot | None = None) -> Batch:
        """Draw ``batch_size`` transitions (with replacement) from the valid ones: uniformly, or
        prioritized with importance weights (N P(i))^-beta normalised by the largest possible one.

        Each call returns new tensors, so a Batch never changes after it is returned; except with
        ``out`` (a ``batch_slot`` of this batch size): then the slot's tensors are refilled in
        place and returned (``indices`` stay on the host, new each call).
        """
        if type(batch_size) is not int or batch_size < 1:  # the full checks only off the fast path
            batch_size = _positive_int(batch_size, "batch_size")
        if type(beta) is not float or not 0.0 <= beta <= 1.0:
            if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0.0 <= beta <= 1.0:
                raise ValueError(f"beta: expected a number in [0, 1], got {beta!r}")
        self._core.check_batch(batch_size)  # before allocating: 10**9 is a ValueError, not a MemoryError
        if out is None:
            return self._sample(batch_size, float(beta))
        if type(out) is not BatchSlot or out.owner is not self or out.batch.action.shape[0] != batch_size:
            got = (f"a slot of batch size {out.batch.action.shape[0]}" if type(out) is BatchSlot and out.owner is self
                   else "a slot of another buffer" if type(out) is BatchSlot else type(out).__name__)
            raise ValueError(f"out: expected this buffer's batch_slot({batch_size}), got {got}")
        return self._sample_into(out, float(beta))

    def batch_slot(self, batch_size: int, device: str | torch.device | None = None) -> BatchSlot:
        """A batch's tensors on ``device`` (default: the buffer's, else the CPU) at fixed addresses,
        views of one block laid out as the sample the core fills, which ``sample(out=)`` refills in
        place: from the host store with one copy of that block (none on the CPU), from a device
        store with one upload of its small fields and one gather into the window. What a CUDA
        graph reads its inputs from."""
        b = _positive_int(batch_size, "batch_size")
        if b > self.capacity:  # a slot may come before the transitions do, not beyond what they can be
            raise ValueError(f"batch_size: expected at most the capacity, {self.capacity}, got {b}")
        dev = resolve_device(device) if device is not None else (self.device or torch.device("cpu"))
        lay = self._layout(b)
        block = torch.zeros(lay.nbytes, dtype=torch.uint8, device=dev)
        tensors = [block[at:at + dt.itemsize * b].view(tdt) for dt, tdt, at in lay.fields]
        window = block[lay.frames_at:].view(lay.torch_dtype).view(lay.window_shape)
        slots = block[lay.slots_at:lay.slots_at + 8 * b * lay.width].view(torch.int64).view(b, lay.width)
        (obs, next_obs), (action, reward, done, discount, *rest) = self._views(window, lay), tensors
        host = _numpy_views(block.numpy(), b, lay, True) if dev.type == "cpu" else None
        return BatchSlot(Batch(obs, action, reward, next_obs, done, discount, *rest), block, slots, window, lay, self,
                         host)

    def _sample(self, b: int, beta: float) -> Batch:
        """sample() after its checks: the core fills one fresh block (host store), or a fresh
        batch slot is filled (device store)."""
        if self._frames is not None:  # device store: a fresh slot, so one pinned upload and one gather
            return self._sample_into(self.batch_slot(b), beta)
        lay = self._layouts.get(b) or self._layouts.setdefault(b, self._layout(b))
        slots, window, fields, views, tensors = self._outputs(b, lay)
        if lay.prioritized:
            self._core.sample_into(b, slots, *fields[:4], window, 0, *fields[4:], beta)
        else:
            self._core.sample_into(b, slots, *fields, window)
        (obs, next_obs), (action, reward, done, discount, *rest) = views, tensors
        return Batch(obs, action, reward, next_obs, done, discount, *rest)

    def _sample_into(self, slot: BatchSlot, beta: float) -> Batch:
        """sample(out=slot) after its checks. A CPU slot of the host store is filled by the core
        where it is; otherwise the core fills a fresh host block (pinned with CUDA: a non_blocking
        copy keeps it from reuse until done) that crosses in one copy."""
        lay, b = slot.layout, slot.slots.shape[0]
        host = self._frames is None
        direct = host and slot.host is not None
        if direct:
            slots, window, fields = slot.host
        else:
            pinned = torch.empty(lay.nbytes if host else lay.frames_at, dtype=torch.uint8,
                                 pin_memory=slot.block.device.type == "cuda")
            slots, window, fields = _numpy_views(pinned.numpy(), b, lay, host)
        fill = self._core.sample_into
        lock = contextlib.nullcontext() if host else self._device_lock
        with lock:
            if lay.prioritized:
                fill(b, slots, *fields[:4], window, 0, *fields[4:], beta)
            else:
                fill(b, slots, *fields, window)
            if not direct:
                slot.block[:pinned.numel()].copy_(pinned, non_blocking=True)
            if not host:
                self._gather_on_device(slot.slots, out=slot.window)
        if not lay.prioritized:
            return slot.batch
        # indices stay on the host (they go back to update_priorities), new each call
        return slot.batch._replace(indices=torch.from_numpy(fields[5].copy() if direct else fields[5]))

    @staticmethod
    def _views(window: torch.Tensor, lay: _Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """obs and next_obs: two views of one [B, window, *frame] tensor."""
        return window[:, :lay.stack], window[:, lay.width - lay.stack:]

    def _layout(self, b: int) -> _Layout:
        """One batch's block: the fields in Batch order (action, reward, done, discount[, weights,
        indices]), the window slots, then the frames on a cache line."""
        names = ("int64", "float32", "float32", "float32") + (("float32", "int64") if self.prioritized else ())
        fields, at = [], 0
        for name in names:
            fields.append((np.dtype(name), getattr(torch, name), at))
            at += 8 * b  # 8 bytes a row for every field: the int64 ones stay aligned
        width, dtype = self._core.window, self.dtype
        slots_at, frames_at = at, -(-(at + 8 * b * width) // 64) * 64
        frame_bytes = int(np.prod(self.frame_shape)) * dtype.itemsize
        return _Layout(tuple(fields), slots_at, frames_at, frames_at + b * width * frame_bytes,
                       (b, width, *self.frame_shape), dtype, self._torch_dtype, self.stack, width, self.prioritized)

    def _outputs(self, b: int, lay: _Layout) -> tuple:
        """One batch's outputs in one fresh block (a Batch never changes once returned; the block
        lives while any of its tensors does): the numpy views the core fills (slots, window,
        fields in Batch order) and the tensors over them ((obs, next_obs), fields),
        all made before the copy. Pinned when CUDA is there, as torch views of the pinned tensor:
        a non_blocking copy of one then keeps the block from reuse until it is done (a
        from_numpy view would not)."""
        pinned = torch.empty(lay.nbytes, dtype=torch.uint8, pin_memory=True) if self._pin else None
        block = np.empty(lay.nbytes, np.uint8) if pinned is None else pinned.numpy()
        slots, window, fields = _numpy_views(block, b, lay, True)
        if pinned is None:  # from_numpy of two numpy views costs less than two tensor slices
            s, w, to_t = lay.stack, lay.width, torch.from_numpy
            return slots, window, fields, (to_t(window[:, :s]), to_t(window[:, w - s:])), [to_t(a) for a in fields]
        tensors = [pinned[at:at + dt.itemsize * b].view(tdt) for dt, tdt, at in lay.fields]
        views = self._views(pinned[lay.frames_at:].view(lay.torch_dtype).view(lay.window_shape), lay)
        return slots, window, fields, views, tensors

    def update_priorities(self, indices, priorities) -> None:
        """Set the sampled transitions ``indices`` (a Batch's) to priority ``priorities`` (e.g.
        |TD error|; eps is added). NaN, negative, out-of-range or stale entries (a transition
        overwritten since it was sampled) raise ValueError and change nothing."""
        if not self.prioritized:
            raise ValueError("update_priorities: expected a prioritized buffer (prioritized=True), got a uniform one")
        idx, pri = (t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
                    for t in (indices, priorities))
        if idx.dtype.kind not in "iu":
            raise TypeError(f"indices: expected integer indices from sample(), got {idx.dtype}")
        if pri.dtype.kind not in "iuf":
            raise TypeError(f"priorities: expected numbers, got {pri.dtype}")
        if idx.shape != pri.shape or idx.ndim != 1:
            raise ValueError(f"update_priorities: expected indices and priorities of one length [B], got "
                             f"{list(idx.shape)} and {list(pri.shape)}")
        self._core.update_priorities(idx.astype(np.int64, copy=False), pri.astype(np.float64, copy=False))

    def _batch(self, window, action, reward, done, discount) -> Batch:
        s = self.stack
        return Batch(window[:, :s], action, reward, window[:, window.shape[1] - s:], done, discount)

    def transition(self, env: int, t: int) -> Batch:
        """Transition ``t`` (the stream's absolute frame index: the first frame of its first
        episode is 0) of stream ``env``, exactly as ``sample`` would rebuild it, as a Batch of 1.
        It must be sampleable now (ValueError otherwise). For checking what was stored, e.g. that
        the observation an agent acted on is the one the buffer returns for that transition."""
        env = self._env(env)
        t = _positive_int(t, "t", minimum=0)
        width = self._core.window
        slots = np.empty((1, width), np.int64)
        fields = (np.empty(1, np.int64), np.empty(1, np.float32), np.empty(1, np.float32), np.empty(1, np.float32))
        if self._frames is None:
            window = np.empty((1, width, *self.frame_shape), self.dtype)
            self._core.transition_into(env, t, slots, *fields, window)
            window = torch.from_numpy(window)
        else:
            with self._device_lock:
                self._core.transition_into(env, t, slots, *fields, None)
                window = self._gather_on_device(torch.from_numpy(slots))
        return self._batch(window, *(torch.from_numpy(a) for a in fields))

    def frames_written(self) -> list[int]:
        """Frames written to each stream so far (a save and the checkpoint beside it must agree)."""
        return [int(w) for w, _ in self._core.streams()]

    # -- saving and restoring (fastdqn/replay/state.py) ---------------------------------------
    # Call these only while no other thread adds or samples: they read and write the raw storage.
    def state_dict(self) -> dict:
        """A copy of everything the buffer holds: storage, streams, RNG state and its config."""
        return replay_state.collect(self)

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` output; the next samples are exactly what the saved buffer's
        would have been. Everything is validated first: a bad state raises ValueError/TypeError
        and leaves this buffer unchanged."""
        replay_state.restore(self, state)

    def save(self, path) -> None:
        """Write the state to ``path`` (uncompressed .npz, exactly that name) atomically."""
        replay_state.save_atomic(path, replay_state.collect(self, copy=False))

    @classmethod
    def load(cls, path, *, device: str | torch.device | None = None) -> "ReplayBuffer":
        """A new buffer with the config and contents saved at ``path``."""
        state = replay_state.load_file(path)
        buf = cls(**replay_state.options_of(state), seed=0, device=device)
        buf.load_state_dict(state)
        return buf

    # -- helpers ----------------------------------------------------------------------------
    def _streams(self, envs) -> tuple[np.ndarray | None, int]:
        """(stream indices or None for all, how many) of a *_many call (the core checks range and repeats)."""
        if envs is None:
            return None, self.num_envs
        envs = np.asarray(envs)
        if envs.ndim != 1:
            raise TypeError(f"envs: expected a sequence of stream indices, got {envs.dtype} {list(envs.shape)}")
        return envs, len(envs)

    def _env(self, env) -> int:
        env = _positive_int(env, "env", minimum=0)
        if env >= self.num_envs:
            raise ValueError(f"env: expected an index in [0, {self.num_envs}), got {env}")
        return env

    def _device_frames(self, frames, name: str, lead: tuple) -> torch.Tensor:
        shape = (*lead, *self.frame_shape)
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if not isinstance(frames, torch.Tensor):
            raise TypeError(f"{name}: expected a {self.dtype} array or tensor of shape {shape}, "
                            f"got {type(frames).__name__}")
        if frames.dtype != self._torch_dtype:
            raise TypeError(f"{name}: expected dtype {self.dtype}, got {frames.dtype}")
        if tuple(frames.shape) != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {tuple(frames.shape)}")
        # frames already there (the collector uploads each step's once) are taken as they are
        return frames if frames.device == self.device else upload(frames, self.device)

    def _gather_on_device(self, slots: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The frames of ``slots`` (-1: zeros) as [*slots.shape, *frame] on the device, into ``out`` if given."""
        slots = slots.to(self.device, non_blocking=True)
        if self.device.type == "cuda" and frames_cuda.available() and self._torch_dtype == torch.uint8 \
                and self.frame_shape == (84, 84):
            return gather.gather_windows(self._frames, slots, out, check=False)  # one kernel, slots come from C++
        flat = slots.clamp(min=0).view(-1)
        if out is None:
            window = self._frames[flat].view(*slots.shape, *self.frame_shape)
        else:
            window = out
            torch.index_select(self._frames, 0, flat, out=out.view(-1, *self.frame_shape))
        pad = (slots < 0).reshape(*slots.shape, *([1] * len(self.frame_shape)))
        return window.masked_fill_(pad, 0)
