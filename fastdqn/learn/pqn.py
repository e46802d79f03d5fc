"""PQN (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"): Q-learning from
rollouts, with no replay and no target net. N envs step T agent steps acting epsilon-greedily on
one layer-normalised Q-net; each step's max_a Q(s, a) is kept; Q(lambda) returns are computed
backwards over the rollout from those Q-values; then a few epochs of shuffled minibatches regress
Q(s, a) onto the returns (Adam-type RAdam, the gradient norm clipped), and the next rollout begins.

``q_lambda_returns`` is the return; ``PQNLearner`` holds the online net, its optimizer and the
rollout's storage at fixed addresses on the device: the observations the agent acted on (uint8
frame stacks stay uint8 up to the net), their max Q-values, and the steps' actions, rewards and
ends. One minibatch step reads its indices from a fixed slot, so on CUDA it is one graph replay
(fastdqn.learn.graphed), as DQN's update is.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from fastdqn.devices import resolve_device
from fastdqn.learn.graphed import make_graphed_update
from fastdqn.learn.learner import LOSSES, PRECISIONS, exploration_draws, native_bf16, update_mode
from fastdqn.learn.model import QNetSpec


def q_lambda_returns(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                     next_values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Q(lambda) returns [T, N] of a rollout of T steps of N envs, computed backwards:

        R_t = r_t + gamma * (1 - term_t) * (V_t + lam * (1 - cut_t) * (R_{t+1} - V_t))

    where V_t = ``next_values[t]`` is max_a Q of step t's next observation (the rollout's
    next step's, or for a truncated step its episode's last), and cut_t is a truncation or the
    rollout's last step: there the chain stops and the return bootstraps from V_t alone. A
    termination masks the bootstrap. ``terminated``/``truncated`` are bools (or 0/1)."""
    for name, x in (("terminated", terminated), ("truncated", truncated), ("next_values", next_values)):
        if x.shape != rewards.shape:
            raise ValueError(f"{name}: expected the rewards' shape {list(rewards.shape)}, got {list(x.shape)}")
    if rewards.ndim != 2 or rewards.shape[0] < 1:
        raise ValueError(f"rewards: expected a [T, N] tensor with T >= 1, got shape {list(rewards.shape)}")
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma, lam: expected numbers in [0, 1], got {gamma!r}, {lam!r}")
    keep = 1.0 - terminated.to(rewards.dtype)
    chain = lam * (1.0 - truncated.to(rewards.dtype))
    returns = torch.empty_like(rewards)
    returns[-1] = rewards[-1] + gamma * keep[-1] * next_values[-1]
    for t in range(rewards.shape[0] - 2, -1, -1):
        v = next_values[t]
        returns[t] = rewards[t] + gamma * keep[t] * (v + chain[t] * (returns[t + 1] - v))
    return returns


class PQNLearner:
    """The online Q-net (a QNetSpec, layer-normalised for PQN), RAdam and a rollout of ``steps``
    agent steps of ``envs`` envs.

    One rollout: ``act`` (the collector's call: epsilon-greedy actions, and the observations and
    their max Q recorded) then ``record`` (the step's actions, rewards and ends), ``steps``
    times; then ``act`` once more, whose max Q is the rollout's bootstrap, and ``learn``: the
    returns, ``epochs`` passes of ``minibatches`` minibatches each, and the last observations
    become the next rollout's first. ``learn`` is what the collector runs while the envs step.

    graph=True (CUDA) captures one minibatch step as a CUDA graph at the first ``learn``;
    compile=None compiles it on CUDA when not graphed (``update_mode``, as DQN's Learner)."""

    blind_exploration = False  # act records every observation and its max Q, exploring or not

    def __init__(self, net: QNetSpec, *, steps: int, envs: int, obs_dtype: torch.dtype = torch.uint8,
                 device="auto", lr: float = 2.5e-4, gamma: float = 0.99, q_lambda: float = 0.65, epochs: int = 2,
                 minibatches: int = 32, max_grad_norm: float = 10.0, loss: str = "mse",
                 compile: bool | None = None, graph: bool | None = False, precision: str = "fp32", seed: int = 0,
                 adam_eps: float = 1e-8):
        if not isinstance(net, QNetSpec):
            raise TypeError(f"net: expected a QNetSpec, got {type(net).__name__}")
        for name, v in (("steps", steps), ("envs", envs), ("epochs", epochs), ("minibatches", minibatches)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        if (steps * envs) % minibatches:
            raise ValueError(f"minibatches: expected a divisor of steps * envs = {steps * envs}, got {minibatches}")
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        if not (0.0 <= gamma <= 1.0 and 0.0 <= q_lambda <= 1.0):
            raise ValueError(f"gamma, q_lambda: expected numbers in [0, 1], got {gamma!r}, {q_lambda!r}")
        if not (lr > 0 and max_grad_norm > 0):
            raise ValueError(f"lr, max_grad_norm: expected numbers > 0, got {lr!r}, {max_grad_norm!r}")
        self.device = resolve_device(device)
        if precision == "bf16" and not native_bf16(self.device):
            raise ValueError(f"precision: expected 'fp32' on {self.device}, which has no native bf16, got 'bf16'")
        self.net, self.steps, self.envs, self.epochs, self.minibatches = net, steps, envs, epochs, minibatches
        self.gamma, self.q_lambda, self.max_grad_norm, self.precision = gamma, q_lambda, max_grad_norm, precision
        self.loss_fn = F.smooth_l1_loss if loss == "huber" else F.mse_loss
        self.online = net.build().to(self.device)
        if self.device.type == "cpu" and len(net.obs_shape) == 3:  # conv nets: oneDNN's layout, as DQN's
            self.online.to(memory_format=torch.channels_last)
        self.graphed, self.compiled = update_mode(self.device, compile, graph)
        cuda = self.device.type == "cuda"
        # RAdam, as purejaxql and CleanRL train PQN; capturable keeps its step and (a tensor) its lr
        # on the device, so a graph replay reads the annealed lr where set_lr writes it
        self.optimizer = torch.optim.RAdam(self.online.parameters(), lr=torch.tensor(lr, device=self.device)
                                           if cuda else lr, eps=adam_eps, foreach=True, capturable=cuda)
        dev, n = self.device, steps * envs
        # The rollout: step t's observations and their max Q at t, step `steps` the bootstrap's
        self.obs = torch.zeros((steps + 1, envs, *net.obs_shape), dtype=obs_dtype, device=dev)
        self.values = torch.zeros((steps + 1, envs), device=dev)
        self.final_values = torch.zeros((steps, envs), device=dev)  # max Q of a truncated episode's last obs
        self.actions = np.zeros((steps, envs), np.int64)
        self.rewards = np.zeros((steps, envs), np.float32)
        self.terminated = np.zeros((steps, envs), bool)
        self.truncated = np.zeros((steps, envs), bool)
        self.cursor = 0  # the step the next act and record fill
        self._acted = False  # whether the cursor's step has been acted on (its record comes next)
        # What a minibatch step reads, at fixed addresses: the rollout flat, its actions and returns
        self._obs_flat = self.obs[:steps].view(n, *net.obs_shape)
        self._actions = torch.zeros(n, dtype=torch.int64, device=dev)
        self._returns = torch.zeros(n, device=dev)
        self.minibatch_size = n // minibatches
        self._generator = torch.Generator(device=dev)
        self._generator.manual_seed(seed)
        self._step = torch.compile(self._minibatch_step) if self.compiled else self._minibatch_step
        self._graph = None
        self.updates = 0

    n_actions = property(lambda self: self.net.n_actions)
    obs_shape = property(lambda self: self.net.obs_shape, doc="[stack, *frame]")
    rollout_full = property(lambda self: self.cursor == self.steps, doc="the rollout waits for its learn()")

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=not self.graphed)

    # -- the rollout --------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: torch.Tensor, epsilon: float, rng: np.random.Generator | None,
            draws: tuple | None = None) -> np.ndarray:
        """Epsilon-greedy actions for the envs' observations [envs, *obs_shape], with the random
        draws ``epsilon_greedy`` takes (from ``rng``, or ``draws``); the net runs on every env,
        since each observation's max Q is recorded (and the observations themselves)."""
        if obs.shape != (self.envs, *self.obs_shape):
            raise ValueError(f"obs: expected shape {[self.envs, *self.obs_shape]}, got {list(obs.shape)}")
        if self._acted:
            raise RuntimeError(f"act: the rollout's step {self.cursor} was acted on already (record or learn first)")
        uniform, random_actions = exploration_draws(rng, self.envs, self.n_actions) if draws is None else draws
        with self._autocast():
            q = self.online(obs).float()
        self.obs[self.cursor].copy_(obs)
        self.values[self.cursor] = q.max(1).values
        greedy = q.argmax(1).cpu().numpy()
        self._acted = True
        return np.where(uniform < epsilon, random_actions, greedy)

    @torch.no_grad()
    def record(self, actions, rewards, terminated, truncated, next_frames) -> None:
        """The acted step's outcome: actions, rewards, terminated, truncated [envs] and each env's
        frame after the action [envs, *frame] (host or device), of which only the truncated envs'
        are read: their episode's last observation is the acted-on stack shifted by that frame."""
        if not self._acted or self.rollout_full:
            raise RuntimeError(f"record: expected an act on step {self.cursor} of {self.steps} first")
        t = self.cursor
        self.actions[t], self.rewards[t] = actions, rewards
        self.terminated[t], self.truncated[t] = terminated, truncated
        self.final_values[t].zero_()
        cut = np.flatnonzero(truncated)
        if cut.size:  # rare: a truncated episode bootstraps from its own last observation
            frames = torch.as_tensor(next_frames[cut] if isinstance(next_frames, np.ndarray) else
                                     next_frames[torch.as_tensor(cut)]).to(self.device)
            idx = torch.as_tensor(cut, device=self.device)
            last = torch.cat([self.obs[t, idx, 1:], frames.unsqueeze(1).to(self.obs.dtype)], dim=1)
            with self._autocast():
                self.final_values[t, idx] = self.online(last).float().max(1).values
        self.cursor, self._acted = t + 1, False

    # -- learning -----------------------------------------------------------------------------
    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr

    def returns(self) -> torch.Tensor:
        """The full rollout's Q(lambda) returns [steps, envs]."""
        dev = self.device
        truncated = torch.from_numpy(self.truncated).to(dev)
        next_values = torch.where(truncated, self.final_values, self.values[1:])
        return q_lambda_returns(torch.from_numpy(self.rewards).to(dev), torch.from_numpy(self.terminated).to(dev),
                                truncated, next_values, self.gamma, self.q_lambda)

    def learn(self) -> tuple[torch.Tensor, int]:
        """Epochs of minibatch steps on the full rollout (after the bootstrap's act); the last
        observations start the next rollout. Returns (the sum of the minibatch losses, their
        number), on the device without syncing."""
        if not (self.rollout_full and self._acted):
            raise RuntimeError(f"learn: expected a full rollout of {self.steps} steps and its bootstrap's act, "
                               f"got {self.cursor} steps")
        with torch.no_grad():
            self._returns.copy_(self.returns().view(-1))
            self._actions.copy_(torch.from_numpy(self.actions).view(-1))
        total, b, n = torch.zeros((), device=self.device), self.minibatch_size, self.steps * self.envs
        for _ in range(self.epochs):
            order = torch.randperm(n, generator=self._generator, device=self.device)
            for i in range(self.minibatches):
                total += self._update(order[i * b:(i + 1) * b])
        self.updates += self.epochs * self.minibatches
        with torch.no_grad():
            self.obs[0].copy_(self.obs[self.steps])
            self.values[0].copy_(self.values[self.steps])
        self.cursor = 0  # the bootstrap's act was the next rollout's first: its step 0 is acted on
        return total, self.epochs * self.minibatches

    def _update(self, idx: torch.Tensor) -> torch.Tensor:
        if not self.graphed:
            return self._step(idx)
        if self._graph is None:
            self._graph = self._capture(idx)
        return self._graph(idx)

    def _minibatch_step(self, idx: torch.Tensor) -> torch.Tensor:
        """One gradient step on the rollout's transitions ``idx``: (Q(s, a) - R)^2, clipped."""
        obs, action, target = self._obs_flat[idx], self._actions[idx], self._returns[idx]
        with self._autocast():
            q = self.online(obs).float().gather(1, action.unsqueeze(1)).squeeze(1)
        loss = self.loss_fn(q, target)
        self.optimizer.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.online.parameters(), self.max_grad_norm)
        self.optimizer.step()
        return loss.detach()

    def _capture(self, idx: torch.Tensor):
        """The minibatch step as a CUDA graph over a fixed index slot; the warm-up steps' changes
        to the optimizer's state are undone (a resumed run keeps its moments)."""
        saved = {p: {k: v.clone() for k, v in st.items() if isinstance(v, torch.Tensor)}
                 for p, st in self.optimizer.state.items()}
        try:
            return make_graphed_update(self._minibatch_step, [idx.clone()], modules=[self.online],
                                       optimizers=[self.optimizer])
        finally:
            with torch.no_grad():
                for p, st in saved.items():
                    for key, v in st.items():
                        self.optimizer.state[p][key].copy_(v)

    # -- checkpoints --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"online": self.online.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Load the online net and (if given) the optimizer, all or nothing: both are loaded into
        copies first, so a part that does not fit raises ValueError and changes nothing."""
        if not isinstance(state, dict) or not isinstance(state.get("online"), dict):
            raise ValueError("state: expected a dict with the online net's state_dict under 'online'")
        if "net" in state and state["net"] != self.net.to_dict():
            raise ValueError(f"net: expected {self.net.to_dict()}, got {state['net']!r}")
        scratch = self.net.build()
        try:
            scratch.load_state_dict(state["online"])
        except RuntimeError as e:
            raise ValueError(f"online: expected the Q-network's state_dict, got one that does not fit "
                             f"({str(e).splitlines()[0]})") from None
        opt_sd = state.get("optimizer")
        if opt_sd is not None:
            own = {k: self.optimizer.defaults[k] for k in ("foreach", "capturable", "differentiable")}
            if not isinstance(opt_sd, dict) or not isinstance(opt_sd.get("param_groups"), list):
                raise ValueError(f"optimizer: expected a RAdam state_dict, got {type(opt_sd).__name__}")
            # this optimizer's kernel choices (a CUDA run's capturable does not fit a CPU learner)
            opt_sd = {**opt_sd, "param_groups": [{**g, **own} for g in opt_sd["param_groups"]]}
            test = torch.optim.RAdam(scratch.parameters(), lr=self.optimizer.defaults["lr"])
            try:
                test.load_state_dict(opt_sd)
            except (KeyError, ValueError, TypeError, RuntimeError) as e:
                raise ValueError(f"optimizer: expected a RAdam state_dict over the online net's parameters, "
                                 f"got one that does not fit ({e!r})") from None
        self.online.load_state_dict(state["online"])
        if opt_sd is not None:
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.load_state_dict(opt_sd)
            for group in self.optimizer.param_groups:  # this learner's lr (a graph reads its tensor); set_lr sets it
                group["lr"] = lr
            self._graph = None  # new optimizer state tensors: the next learn captures again
