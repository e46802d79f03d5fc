"""DQN learner: TD target (or C51's distributional loss, fastdqn.learn.distributional), the update
step (optionally torch.compile'd), in-place target sync, batched epsilon-greedy acting; noisy nets
draw new noise per update and per acting step."""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fastdqn.devices import resolve_device
from fastdqn.learn.acting import GraphedGreedy
from fastdqn.learn.distributional import distributional_loss
from fastdqn.learn.graphed import make_graphed_update
from fastdqn.learn.model import QNetSpec

LOSSES = ("mse", "huber")
PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA: Ampere and later; CPU: AVX-512 BF16 or AMX)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def epsilon_at(frame: int, start: float, final: float, decay_frames: int) -> float:
    """Linear from start to final over decay_frames agent steps, then constant."""
    if decay_frames <= 0:
        return final
    return start + (final - start) * min(1.0, frame / decay_frames)


def apex_epsilon(i: int, n: int, base: float = 0.4, alpha: float = 7.0) -> float:
    """Actor i of n's fixed exploration rate in Ape-X (Horgan et al. 2018): base^(1 + alpha i/(n-1))."""
    if not (isinstance(i, int) and isinstance(n, int) and 0 <= i < n and n >= 2):
        raise ValueError(f"apex_epsilon: expected 0 <= i < n with n >= 2, got i={i!r}, n={n!r}")
    return base ** (1.0 + alpha * i / (n - 1))


def exploration_draws(rng: np.random.Generator, n: int, n_actions: int) -> tuple[np.ndarray, np.ndarray]:
    """(uniform [0, 1) per env, random action per env): the draws one epsilon-greedy step of n envs
    takes, from one call: ``Generator.integers`` costs 6 us a call, more than the rest of a step's
    acting at epsilon 1. floor(u * n_actions) of a 53-bit u is uniform over the actions to 2^-53."""
    u = rng.random(2 * n)
    return u[:n], (u[n:] * n_actions).astype(np.int64)


@torch.no_grad()
def epsilon_greedy(net: torch.nn.Module, obs: torch.Tensor, n_actions: int, epsilon: float,
                   rng: np.random.Generator | None, draws: tuple | None = None, *,
                   greedy: Callable | None = None) -> np.ndarray:
    """Epsilon-greedy actions of ``net`` for a batch [N, *obs_shape]: the one acting rule of the
    trainer, the Ray actors, play and eval. The random draws come from ``rng`` (or are given as
    ``draws``, exploration_draws of these envs), so a seeded run repeats its actions; the net runs
    only if some env acts greedily. ``greedy(obs)``: net's greedy actions as numpy, when not
    eagerly (the Learner's on CUDA: one graph replay, fastdqn.learn.acting)."""
    uniform, actions = exploration_draws(rng, obs.shape[0], n_actions) if draws is None else draws
    explore = uniform < epsilon
    if not explore.all():
        best = net(obs).argmax(1).cpu().numpy() if greedy is None else greedy(obs)
        actions = np.where(explore, actions, best)
    return actions


def td_target(
    reward: torch.Tensor,
    done: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float,
    next_q_online: torch.Tensor | None = None,
    discount: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = r + gamma * (1 - done) * Q_target(s', a*); a* = argmax Q_target (DQN) or
    argmax Q_online (Double DQN, when next_q_online is given). done is 1.0 only on termination.
    ``discount`` (per sample, gamma^k for n-step returns) replaces gamma when given."""
    if next_q_online is None:
        next_v = next_q_target.max(1).values
    else:
        a_star = next_q_online.argmax(1, keepdim=True)
        next_v = next_q_target.gather(1, a_star).squeeze(1)
    return reward + (gamma if discount is None else discount) * (1.0 - done) * next_v


def td_loss(online, target, obs, action, reward, next_obs, done, discount=None, weights=None, *, gamma,
            loss="mse", double=False, errors=False):
    """Mean TD loss of a batch (uint8 frames, int64 actions, float32 reward/done/discount),
    each sample's loss weighted by ``weights`` (prioritized replay's importance weights) when
    given. ``errors=True`` returns (loss, |TD error| per sample): the new priorities. A
    distributional net (atoms > 1) takes C51's cross-entropy instead (``loss`` does not apply), its
    per-sample cross-entropy being the priorities."""
    if online.atoms > 1:
        value, cross_entropy = distributional_loss(online, target, obs, action, reward, next_obs, done, discount,
                                                   weights, gamma=gamma, double=double)
        return (value, cross_entropy) if errors else value
    q = online(obs).float().gather(1, action.unsqueeze(1)).squeeze(1)  # float: bf16 nets give fp32 targets
    with torch.no_grad():
        next_online = online(next_obs).float() if double else None
        y = td_target(reward, done, target(next_obs).float(), gamma, next_online, discount)
    fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
    value = fn(q, y) if weights is None else (weights * fn(q, y, reduction="none")).mean()
    return (value, (q - y).detach().abs()) if errors else value


def update_mode(device: torch.device, compile: bool | None, graph: bool | None) -> tuple[bool, bool]:
    """(graphed, compiled): how the update runs on ``device``. graph=None is a CUDA graph on CUDA
    unless compile=True asks for torch.compile instead; compile=None compiles on CUDA when the
    update is not graphed. ValueError for what cannot run (a graph off CUDA, or both at once)."""
    cuda = device.type == "cuda"
    graphed = (cuda and not compile) if graph is None else bool(graph)
    if graphed and not cuda:
        raise ValueError(f"graph: expected False on {device} (CUDA graphs need a CUDA device), got True")
    if graphed and compile:
        raise ValueError("compile: expected False or None with graph=True (the graph captures the eager "
                         "update), got True")
    return graphed, (cuda and not graphed) if compile is None else bool(compile)


class Learner:
    """Online and target Q-networks with Adam, both built from ``net`` (a QNetSpec: Nature DQN
    for frame stacks, an MLP for vector observations); ``update(batch)`` is one gradient step.

    graph=True (CUDA only; None: on CUDA unless compile=True) captures the whole eager update in one CUDA graph
    (fastdqn.learn.graphed) at the first update and replays it after; the returned loss is then the
    same tensor every call. Otherwise compile=None compiles on CUDA and stays eager on the CPU
    (compilation there costs more than it saves for a 1.7M-parameter net at batch 32);
    ``compile_mode`` is torch.compile's mode. ``precision="bf16"`` runs the forward passes (acting
    and the update) under bf16 autocast, on a device with native bf16; weights, Adam and the TD
    targets stay fp32. ``adam_eps`` is Adam's epsilon (Rainbow's 1.5e-4; torch's 1e-8).

    Noisy nets (``net.noisy``): each update draws new noise in the online and the target net
    before its forward passes (inside the update, so a CUDA graph draws anew at every replay), and
    each ``act`` draws new noise in the online net before acting (on CUDA inside the greedy graph).
    """

    @property
    def blind_exploration(self) -> bool:
        """``act`` reads no observation where every env explores (its actions are the draws'
        own), so a collector may send them before the frames exist; a noisy net acts by noise."""
        return not self.net.noisy

    def __init__(self, net: QNetSpec, *, device="auto", lr: float = 1e-4, gamma: float = 0.99,
                 loss: str = "mse", double: bool = False, compile: bool | None = None,
                 compile_mode: str | None = None, graph: bool | None = False, precision: str = "fp32",
                 adam_eps: float = 1e-8):
        if not isinstance(net, QNetSpec):
            raise TypeError(f"net: expected a QNetSpec, got {type(net).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma: expected 0 <= gamma <= 1, got {gamma}")
        if not lr > 0:
            raise ValueError(f"lr: expected > 0, got {lr}")
        if not (isinstance(adam_eps, (int, float)) and 0 < adam_eps < float("inf")):
            raise ValueError(f"adam_eps: expected a finite number > 0, got {adam_eps!r}")
        self.device = resolve_device(device)
        if precision == "bf16" and not native_bf16(self.device):
            raise ValueError(f"precision: expected 'fp32' on {self.device}, which has no native bf16, got 'bf16'")
        self.precision = precision
        self.gamma, self.loss_kind, self.double = float(gamma), loss, bool(double)
        self.net = net
        self.online = net.build().to(self.device)
        self.target = net.build().to(self.device)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        if self.device.type == "cpu" and len(net.obs_shape) == 3:  # conv nets: oneDNN's preferred layout
            # measured 1.05-1.12x per update on an AMD EPYC (Zen 4), fp32 and bf16 (docs/performance.md)
            self.online.to(memory_format=torch.channels_last)
            self.target.to(memory_format=torch.channels_last)
        cuda = self.device.type == "cuda"
        # fused Adam: one kernel for all parameters, one pass over each (on the CPU 9.6x faster
        # than the default per-tensor loop for Nature DQN, 0.77 vs 7.4 ms; docs/performance.md);
        # capturable keeps its step count on the device so the compiled step never syncs on it.
        extra = {"fused": True, "capturable": True} if cuda else {"fused": True}
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=lr, eps=float(adam_eps), **extra)
        self.graphed, self.compiled = update_mode(self.device, compile, graph)
        self._step = torch.compile(self._update, mode=compile_mode) if self.compiled else self._update
        self._graphs: dict = {}  # graph=True: K -> the K captured updates, made when K updates first come
        self._pairs = list(zip(self.target.parameters(), self.online.parameters()))
        # CUDA: the greedy forward as a graph, captured at the first greedy act (None: eager, the CPU)
        self._greedy = (GraphedGreedy(self.online, functools.partial(self._autocast, True), redraw_noise=net.noisy)
                        if cuda else None)
        self.updates = 0

    n_actions = property(lambda self: self.net.n_actions)
    obs_shape = property(lambda self: self.net.obs_shape, doc="[stack, *frame]")

    def _autocast(self, graphed: bool | None = None):
        """The forward passes' context; ``graphed``: for a CUDA graph (default: the update's mode)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        # no weight-cast cache under a CUDA graph: the capture would keep stale casts
        graphed = self.graphed if graphed is None else graphed
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not graphed)

    def _update(self, obs, action, reward, next_obs, done, discount=None, weights=None):
        if self.net.noisy:  # a static choice: a captured graph redraws at every replay
            self.online.reset_noise()
            self.target.reset_noise()
        with self._autocast():  # backward runs outside, in the dtypes the forward chose
            loss, errors = td_loss(self.online, self.target, obs, action, reward, next_obs, done, discount, weights,
                                   gamma=self.gamma, loss=self.loss_kind, double=self.double, errors=True)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), errors

    def update(self, batch, *, in_place: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """One step on a replay Batch (CPU or device tensors) or a tuple (obs, action, reward,
        next_obs, done[, discount[, weights]]); returns (loss, |TD error| per sample: prioritized
        replay's new priorities), on the device without syncing (call .item() only when you log).
        Graphed, both are the same tensors every call: use them before the next update.
        ``in_place=True``: the batch's tensors are the same ones every call, refilled in place (a
        ReplayBuffer.batch_slot on this device); a graph then reads them where they are, with no copy."""
        (loss,), (priorities,) = self.update_many([batch], in_place=in_place)
        return loss, priorities

    def update_many(self, batches, *, in_place: bool = False) -> tuple[list, list]:
        """``update`` of each batch in turn: ([loss], [priorities]), one of each per batch. Graphed,
        the K updates are one graph replay (a graph is captured for each K it meets)."""
        inputs = [to_device(b, self.device) for b in batches]
        self.updates += len(inputs)
        if not self.graphed:
            outs = [self._step(*x) for x in inputs]
            return [o[0] for o in outs], [o[1] for o in outs]
        flat = [t for x in inputs for t in x]
        graph = self._graphs.get(len(inputs))
        if graph is None or len(graph.static_inputs) != len(flat) or graph.static_inputs[0].shape != flat[0].shape:
            graph = self._capture(inputs, in_place)
        return graph(*flat)

    def _updates_in_turn(self, k: int, n: int):
        """The K-update function a graph captures: flat inputs, n per batch, in order."""
        def run(*flat):
            outs = [self._update(*flat[i * n:(i + 1) * n]) for i in range(k)]
            return [o[0] for o in outs], [o[1] for o in outs]
        return run

    def _capture(self, batches: list, in_place: bool = False):
        """Capture len(batches) updates on the batches themselves (in_place) or on static copies
        of them. The warm-up steps the capture needs are undone: the net's weights are restored,
        and Adam's state is put back as it was (zero when no update has run yet, the resumed
        moments otherwise)."""
        saved = {p: {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
                 for p, st in self.optimizer.state.items()}
        k, n = len(batches), len(batches[0])
        self._graphs.pop(k, None)  # the old graph and its memory pool go before the new one is captured
        static = [t if in_place else t.clone() for x in batches for t in x]
        try:
            self._graphs[k] = make_graphed_update(self._updates_in_turn(k, n), static, modules=[self.online],
                                                  optimizers=[self.optimizer])
            return self._graphs[k]
        finally:  # a capture that raises leaves no warm-up step applied either
            with torch.no_grad():
                for p, st in saved.items():
                    for key, v in st.items():
                        self.optimizer.state[p][key].copy_(v)

    @torch.no_grad()
    def sync_target(self) -> None:
        """Copy the online weights into the target net in place (same storage, no realloc)."""
        for t, o in self._pairs:
            t.copy_(o)

    def act(self, obs: torch.Tensor, epsilon: float, rng: np.random.Generator | None,
            draws: tuple | None = None) -> np.ndarray:
        """Epsilon-greedy actions (epsilon_greedy) for a batch of observations [N, *obs_shape] on the
        device; on CUDA the greedy ones from one CUDA-graph replay (fastdqn.learn.acting). A noisy
        net acts with new noise each call."""
        if self._greedy is None:
            if self.net.noisy:
                self.online.reset_noise()
            with self._autocast():
                return epsilon_greedy(self.online, obs, self.n_actions, epsilon, rng, draws)
        if self._greedy.net is not self.online:  # a new net: a new graph
            self._greedy = GraphedGreedy(self.online, self._greedy.autocast, redraw_noise=self.net.noisy)
        return epsilon_greedy(self.online, obs, self.n_actions, epsilon, rng, draws, greedy=self._greedy)

    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Load online, target (default: online) and optimizer (default: keep) - all or nothing.

        Loading straight into the live modules would fail halfway on a bad target or optimizer
        part and leave a half-loaded learner (new online net, old target). So every part is
        checked first (the nets' keys, types and shapes; the optimizer part is loaded into a
        throwaway Adam over copies of the parameters and its moments' shapes checked), and only
        then copied into the live modules, which can no longer fail.
        """
        if not isinstance(state, dict):
            raise TypeError(f"state: expected a dict from Learner.state_dict(), got {type(state).__name__}")
        if "online" not in state:
            raise ValueError(f"state: expected a dict with key 'online', got keys {sorted(map(str, state))}")
        if "net" in state and _spec_or_none(state["net"]) != self.net:  # a checkpoint's: the same net, or refused
            raise ValueError(f"net: expected {self.net.to_dict()}, got {state['net']!r}")
        nets = {"online": state["online"], "target": state.get("target", state["online"])}
        ref = self.online.state_dict()
        for name, sd in nets.items():
            if not isinstance(sd, dict):
                raise TypeError(f"{name}: expected a state_dict (dict), got {type(sd).__name__}")
            missing, extra = sorted(ref.keys() - sd.keys()), sorted(map(str, sd.keys() - ref.keys()))
            if missing or extra:
                raise ValueError(f"{name}: expected the keys of the Q-network's state_dict, got "
                                 f"missing {missing}, unexpected {extra}")
            for key, want in ref.items():
                v = sd[key]
                if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                    got = v.dtype if isinstance(v, torch.Tensor) else type(v).__name__
                    raise TypeError(f"{name}: expected {key} to be a floating-point tensor, got {got}")
                if v.shape != want.shape:
                    raise ValueError(f"{name}: expected {key} of shape {tuple(want.shape)} "
                                     f"({self.n_actions} actions), got {tuple(v.shape)}")
        opt_sd = state.get("optimizer")
        if opt_sd is not None:
            if not isinstance(opt_sd, dict):
                raise TypeError(f"optimizer: expected an Adam state_dict (dict), got {type(opt_sd).__name__}")
            opt_sd = self._with_own_kernels(opt_sd)
            scratch = torch.optim.Adam([torch.zeros_like(p) for p in self.online.parameters()],
                                       **self.optimizer.defaults)
            try:
                scratch.load_state_dict(opt_sd)
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                raise ValueError(f"optimizer: expected an Adam state_dict over the online net's "
                                 f"{len(self._pairs)} parameters, got one that does not fit ({e!r})") from None
            for p in (p for g in scratch.param_groups for p in g["params"]):
                for key, v in scratch.state.get(p, {}).items():
                    if key != "step" and (not isinstance(v, torch.Tensor) or v.shape != p.shape):
                        got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                        raise ValueError(f"optimizer: expected {key} of shape {tuple(p.shape)}, got {got}")
        # commit: keys and shapes match, so these copy in place and cannot fail
        self.online.load_state_dict(nets["online"])
        self.target.load_state_dict(nets["target"])
        if opt_sd is not None:
            self.optimizer.load_state_dict(opt_sd)
            self._graphs.clear()  # new optimizer state tensors: the next updates capture again


    _KERNEL_FLAGS = ("fused", "capturable", "foreach", "differentiable")

    def _with_own_kernels(self, opt_sd: dict) -> dict:
        """``opt_sd`` with this optimizer's kernel choices (fused, capturable, ...) in place of the
        saved ones: a checkpoint from a CUDA run would otherwise put fused/capturable Adam on a CPU
        learner, and a CPU checkpoint would take them away from a CUDA one. lr, betas, eps and the
        moments still come from the checkpoint; Adam then puts ``step`` where these flags want it."""
        groups = opt_sd.get("param_groups")
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            return opt_sd  # malformed: the scratch load below rejects it
        own = {k: self.optimizer.defaults[k] for k in self._KERNEL_FLAGS if k in self.optimizer.defaults}
        return {**opt_sd, "param_groups": [{**g, **own} for g in groups]}


def _spec_or_none(d) -> QNetSpec | None:
    """The QNetSpec a checkpoint's ``net`` entry describes (written before or after its optional keys), or None."""
    try:
        return QNetSpec.from_dict(d)
    except (TypeError, ValueError):
        return None


def to_device(batch, device: torch.device):
    """(obs, action, reward, next_obs, done[, discount[, weights]]) on device, from a Batch or a
    tuple of those (a Batch's indices stay behind: they go back to the replay). obs/next_obs
    usually are two views of one pinned window: then the window crosses once and is split on the
    device."""
    obs, action, reward, next_obs, done, *rest = batch
    rest = [t for t in rest[:2] if t is not None]
    if obs.device == device:
        return (obs, action, reward, next_obs, done, *rest)
    nb = obs.is_pinned()
    b, s, *frame_shape = obs.shape
    frame_strides, step = [], 1  # a C-contiguous frame's strides, innermost first
    for d in reversed(frame_shape):
        frame_strides.insert(0, step)
        step *= d
    # next_obs starts `ahead` frames after obs in the same window: 1 (1-step) or stack (n-step)
    ahead, rem = divmod((next_obs.data_ptr() - obs.data_ptr()) // obs.element_size(), step)
    width = s + ahead
    if (rem == 0 and ahead in (1, s) and obs.stride() == next_obs.stride()
            and obs.stride() == (width * step, step, *frame_strides)):
        window = obs.as_strided((b, width, *obs.shape[2:]), obs.stride()).to(device, non_blocking=nb)
        obs_d, next_d = window[:, :s], window[:, ahead:]
    else:
        obs_d, next_d = obs.to(device, non_blocking=nb), next_obs.to(device, non_blocking=nb)
    return (obs_d, action.to(device, non_blocking=nb), reward.to(device, non_blocking=nb),
            next_d, done.to(device, non_blocking=nb), *(t.to(device, non_blocking=nb) for t in rest))
