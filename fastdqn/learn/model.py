"""Q-networks: Nature DQN (Mnih et al. 2015) for stacked frames, an MLP for vector observations,
each with a plain or a dueling head (Wang et al. 2016), optionally distributional (C51,
Bellemare et al. 2017), noisy (Fortunato et al. 2018) or layer-normalised (PQN, Gallici et al.
2024), all described by one ``QNetSpec``: the learner, play, eval and the Ray actors build their
nets from it, and a checkpoint saves it as one entry (``net``).

Every net's ``forward`` gives Q-values [B, n_actions] (a distributional net's: the mean of each
action's distribution), so acting, evaluation and play never ask which kind it is; a
distributional net's ``logits`` give the distributions [B, n_actions, atoms] over ``support``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

HEADS = ("plain", "dueling")
SIGMA0 = 0.5  # noisy nets' initial noise scale, factorised (Fortunato et al. 2018, section 3.2)


@dataclass(frozen=True)
class QNetSpec:
    """What a Q-network is: its actions, its observations [stack, *frame] (2-D frames: Nature
    DQN; anything else: the MLP), its head (HEADS) and the head's kind: ``atoms`` > 1 is C51's
    distribution over that many returns evenly spaced on [v_min, v_max] (1: one Q-value per action),
    ``noisy`` makes the head's linear layers NoisyLinear, ``layer_norm`` puts a LayerNorm before
    every hidden ReLU (PQN). ``build()`` makes one; ``to_dict()`` is its checkpoint entry,
    ``from_dict`` reads one back (ValueError naming what does not fit; the last five keys may be
    missing, as in checkpoints from before them)."""

    n_actions: int
    obs_shape: tuple = (4, 84, 84)
    head: str = "plain"
    atoms: int = 1
    v_min: float = -10.0
    v_max: float = 10.0
    noisy: bool = False
    layer_norm: bool = False

    def __post_init__(self):
        n = self.n_actions
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n_actions: expected an int >= 1, got {n!r}")
        shape = self.obs_shape
        if not isinstance(shape, (tuple, list)) or not shape or \
                not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ValueError(f"obs_shape: expected a list of positive ints, got {shape!r}")
        object.__setattr__(self, "obs_shape", tuple(shape))
        if self.head not in HEADS:
            raise ValueError(f"head: expected one of {HEADS}, got {self.head!r}")
        a = self.atoms
        if not isinstance(a, int) or isinstance(a, bool) or a < 1:
            raise ValueError(f"atoms: expected an int >= 1 (1: no distribution), got {a!r}")
        for name in ("v_min", "v_max"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"{name}: expected a finite number, got {v!r}")
            object.__setattr__(self, name, float(v))
        if not self.v_min < self.v_max:
            raise ValueError(f"v_max: expected > v_min={self.v_min:g}, got {self.v_max:g}")
        for name in ("noisy", "layer_norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected a bool, got {getattr(self, name)!r}")

    @property
    def distributional(self) -> bool:
        return self.atoms > 1

    def build(self) -> nn.Module:
        kw = dict(dueling=self.head == "dueling", atoms=self.atoms, v_min=self.v_min, v_max=self.v_max,
                  noisy=self.noisy, layer_norm=self.layer_norm)
        if len(self.obs_shape) == 3:
            return NatureDQN(self.n_actions, self.obs_shape[0], self.obs_shape[1:], **kw)
        return MLPQNet(self.n_actions, self.obs_shape, **kw)

    def to_dict(self) -> dict:
        return {"n_actions": self.n_actions, "obs_shape": list(self.obs_shape), "head": self.head,
                "atoms": self.atoms, "v_min": self.v_min, "v_max": self.v_max, "noisy": self.noisy,
                "layer_norm": self.layer_norm}

    @classmethod
    def from_dict(cls, d) -> QNetSpec:
        keys, optional = ("n_actions", "obs_shape", "head"), ("atoms", "v_min", "v_max", "noisy", "layer_norm")
        if not isinstance(d, dict) or not set(keys) <= set(d) or not set(d) <= set(keys + optional):
            got = sorted(map(str, d)) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"net: expected a dict with keys {list(keys)} and optionally {list(optional)}, "
                             f"got {got}")
        return cls(**d)


class NoisyLinear(nn.Module):
    """A linear layer with factorised Gaussian noise (Fortunato et al. 2018): weight = mu +
    sigma * f(eps_out) f(eps_in)^T, bias = mu_b + sigma_b * f(eps_out), f(x) = sign(x) sqrt(|x|),
    with eps drawn by ``reset_noise()`` (in place, so a CUDA graph that captures it draws anew at
    every replay). In eval mode it is the mean layer, mu alone."""

    def __init__(self, n_in: int, n_out: int, sigma0: float = SIGMA0):
        super().__init__()
        self.in_features, self.out_features = n_in, n_out
        bound = 1.0 / math.sqrt(n_in)
        self.weight_mu = nn.Parameter(torch.empty(n_out, n_in).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(torch.full((n_out, n_in), sigma0 * bound))
        self.bias_mu = nn.Parameter(torch.empty(n_out).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(torch.full((n_out,), sigma0 * bound))
        # the noise is not the net's state: a checkpoint holds mu and sigma, a load keeps the noise
        self.register_buffer("eps_in", torch.zeros(n_in), persistent=False)
        self.register_buffer("eps_out", torch.zeros(n_out), persistent=False)
        self.reset_noise()

    @torch.no_grad()
    def reset_noise(self) -> None:
        for eps in (self.eps_in, self.eps_out):
            eps.normal_()
            eps.copy_(eps.sign() * eps.abs().sqrt())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return nn.functional.linear(x, self.weight_mu, self.bias_mu)
        # (mu + sigma * outer(eps_out, eps_in)) x without making that [out, in] matrix: two matmuls
        # instead of one and five passes over the weights (1.6x faster per update on the CPU, dueling C51)
        mean = nn.functional.linear(x, self.weight_mu, self.bias_mu + self.bias_sigma * self.eps_out)
        return mean + nn.functional.linear(x * self.eps_in, self.weight_sigma) * self.eps_out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def _linear(n_in: int, n_out: int, noisy: bool) -> nn.Module:
    return NoisyLinear(n_in, n_out) if noisy else nn.Linear(n_in, n_out)


def _hidden(layer: nn.Module, width, layer_norm: bool) -> list:
    """layer, then a LayerNorm over ``width`` (PQN's), then ReLU."""
    return [layer, *([nn.LayerNorm(width)] if layer_norm else []), nn.ReLU()]


class DuelingHead(nn.Module):
    """Q = V + A - mean(A): a value stream and an advantage stream over the same features, each
    with its own hidden layer (Wang et al. 2016); subtracting the mean advantage makes V and A
    identifiable. With ``atoms`` > 1 it is done per atom, on the logits (Rainbow)."""

    def __init__(self, n_features: int, hidden: int, n_actions: int, atoms: int = 1, noisy: bool = False,
                 layer_norm: bool = False):
        super().__init__()
        self.n_actions, self.atoms = n_actions, atoms
        self.value = nn.Sequential(*_hidden(_linear(n_features, hidden, noisy), hidden, layer_norm),
                                   _linear(hidden, atoms, noisy))
        self.advantage = nn.Sequential(*_hidden(_linear(n_features, hidden, noisy), hidden, layer_norm),
                                       _linear(hidden, n_actions * atoms, noisy))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.advantage(x).view(x.shape[0], self.n_actions, self.atoms)
        out = self.value(x).view(x.shape[0], 1, self.atoms) + a - a.mean(1, keepdim=True)
        return out.view(x.shape[0], self.n_actions * self.atoms)


def _head(n_features: int, hidden: int, n_actions: int, dueling: bool, atoms: int = 1, noisy: bool = False,
          layer_norm: bool = False) -> list:
    """The layers from the features to n_actions * atoms outputs."""
    if dueling:
        return [DuelingHead(n_features, hidden, n_actions, atoms, noisy, layer_norm)]
    return [*_hidden(_linear(n_features, hidden, noisy), hidden, layer_norm), _linear(hidden, n_actions * atoms, noisy)]


class QNet(nn.Module):
    """What every Q-network shares: ``_outputs(x)`` [B, n_actions * atoms] (the subclass's), then
    Q-values from ``forward``, distributions from ``logits`` and new noise from ``reset_noise``."""

    def _setup(self, n_actions: int, atoms: int, v_min: float, v_max: float, dueling: bool, noisy: bool,
               layer_norm: bool) -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions: expected >= 1, got {n_actions}")
        if atoms < 1:
            raise ValueError(f"atoms: expected >= 1, got {atoms}")
        self.n_actions, self.atoms, self.dueling = n_actions, atoms, bool(dueling)
        self.noisy, self.layer_norm = bool(noisy), bool(layer_norm)
        # the returns the atoms stand for (derived from the spec, so not in the state_dict)
        self.register_buffer("support", torch.linspace(v_min, v_max, atoms) if atoms > 1 else torch.zeros(1),
                             persistent=False)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """[B, n_actions, atoms]: each action's return distribution, softmax over the last dim."""
        return self._outputs(x).view(x.shape[0], self.n_actions, self.atoms)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._outputs(x)
        if self.atoms == 1:
            return out
        p = torch.softmax(out.view(x.shape[0], self.n_actions, self.atoms).float(), dim=-1)
        return (p * self.support).sum(-1)

    def reset_noise(self) -> None:
        """New noise in every NoisyLinear (none: nothing to do)."""
        for m in self.modules():
            if isinstance(m, NoisyLinear):
                m.reset_noise()


class NatureDQN(QNet):
    """conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512, fc n_actions; ReLU between (with ``layer_norm``
    a LayerNorm before each ReLU, as PQN's Atari net).

    Takes uint8 [B, stack, 84, 84] and scales it by 1/255 on whatever device it is on,
    so frames cross the host/device boundary as bytes (4x fewer than float32).
    """

    def __init__(self, n_actions: int, in_channels: int = 4, frame_shape: tuple[int, int] = (84, 84),
                 dueling: bool = False, atoms: int = 1, v_min: float = -10.0, v_max: float = 10.0,
                 noisy: bool = False, layer_norm: bool = False):
        super().__init__()
        self._setup(n_actions, atoms, v_min, v_max, dueling, noisy, layer_norm)
        self.in_channels, self.frame_shape = in_channels, tuple(frame_shape)
        self.obs_shape = (in_channels, *self.frame_shape)
        layers, x = [], torch.zeros(1, in_channels, *frame_shape)
        for conv in (nn.Conv2d(in_channels, 32, kernel_size=8, stride=4), nn.Conv2d(32, 64, kernel_size=4, stride=2),
                     nn.Conv2d(64, 64, kernel_size=3, stride=1)):
            with torch.no_grad():
                x = conv(x)
            layers += _hidden(conv, list(x.shape[1:]), layer_norm)
        self.conv = nn.Sequential(*layers, nn.Flatten())
        head = _head(x[0].numel(), 512, n_actions, dueling, atoms, noisy, layer_norm)
        self.fc = head[0] if dueling else nn.Sequential(*head)  # the state_dict keys of earlier checkpoints

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() * (1.0 / 255.0)
        return self.fc(self.conv(x))


class MLPQNet(QNet):
    """Two hidden layers of ``hidden`` ReLU units for vector observations [B, stack, *shape]
    (flattened), as CleanRL's dqn.py builds it for CartPole (120, 84 there; 256, 256 here)."""

    def __init__(self, n_actions: int, obs_shape: tuple, hidden: int = 256, dueling: bool = False, atoms: int = 1,
                 v_min: float = -10.0, v_max: float = 10.0, noisy: bool = False, layer_norm: bool = False):
        super().__init__()
        self._setup(n_actions, atoms, v_min, v_max, dueling, noisy, layer_norm)
        self.obs_shape = tuple(obs_shape)
        n_in = math.prod(int(d) for d in self.obs_shape)
        head = _head(hidden, hidden, n_actions, dueling, atoms, noisy, layer_norm)  # first: seeded runs' init
        # the first layer stays a plain Linear: noisy nets perturb the head (Rainbow's fc layers)
        self.fc = nn.Sequential(nn.Flatten(), *_hidden(nn.Linear(n_in, hidden), hidden, layer_norm), *head)

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.float())
