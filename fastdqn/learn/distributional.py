"""C51's update (Bellemare et al. 2017, Algorithm 1): the target distribution of each sample,
projected onto the net's fixed support, and the cross-entropy between it and the online net's
distribution of the action taken. Rainbow (Hessel et al. 2018) takes the n-step return and the
Double DQN action and uses each sample's cross-entropy as its new priority; so does this.

Everything here has fixed shapes and no host syncs, so the update stays one CUDA-graph replay:
the projection is a dense [B, atoms, atoms] product (each target atom's mass spread over its two
neighbours by a hat function) instead of Algorithm 1's scatter, which also keeps the whole mass
when an atom lands exactly on the support (l == u, where the paper's two weights are both 0).
Softmaxes and the projection run in fp32 whatever the forward's autocast dtype.
"""

from __future__ import annotations

import torch


def project_distribution(next_probs: torch.Tensor, reward: torch.Tensor, discount: torch.Tensor,
                         done: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """[B, atoms]: the distribution of r + discount * (1 - done) * Z projected onto ``support``.

    ``next_probs`` [B, atoms] is Z's distribution (the target net's, at the bootstrap action) over
    ``support`` [atoms] (evenly spaced, v_min to v_max); ``reward``, ``discount`` (gamma^k of an
    n-step return) and ``done`` (1.0 on termination only) are [B]. Each shifted atom Tz_j, clipped
    to [v_min, v_max], sits at b_j = (Tz_j - v_min) / dz on the atoms' index scale; atom i gets
    p_j * max(0, 1 - |b_j - i|): the paper's (u - b_j) and (b_j - l) for its neighbours l, u."""
    atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (atoms - 1)
    shifted = reward.unsqueeze(1) + (discount * (1.0 - done)).unsqueeze(1) * support  # [B, atoms]
    b = (shifted.clamp(v_min, v_max) - v_min) / dz
    index = torch.arange(atoms, device=support.device, dtype=b.dtype)
    spread = (1.0 - (b.unsqueeze(2) - index).abs()).clamp(min=0.0)  # [B, j, i]: atom j's share for atom i
    return torch.bmm(next_probs.unsqueeze(1), spread).squeeze(1)


def distributional_loss(online, target, obs, action, reward, next_obs, done, discount=None, weights=None, *,
                        gamma: float, double: bool = False):
    """(mean cross-entropy loss, cross-entropy per sample) of a batch, C51's update: the target is
    the projected distribution of the target net at a* = argmax of the online net's mean Q
    (``double``) or the target net's; each sample's loss is weighted by ``weights``
    (prioritized replay's importance weights) when given. The per-sample cross-entropy, detached,
    is prioritized replay's new priority (Rainbow's)."""
    log_p = torch.log_softmax(online.logits(obs).float(), dim=-1)  # [B, A, atoms], fp32 under autocast
    log_p_taken = log_p.gather(1, action.view(-1, 1, 1).expand(-1, 1, log_p.shape[2])).squeeze(1)
    with torch.no_grad():
        support = target.support.float()
        next_probs = torch.softmax(target.logits(next_obs).float(), dim=-1)  # [B, A, atoms]
        if double:  # Double DQN: the online net picks the action, the target net's distribution scores it
            next_q = online(next_obs).float()
        else:
            next_q = (next_probs * support).sum(-1)
        a_star = next_q.argmax(1).view(-1, 1, 1).expand(-1, 1, next_probs.shape[2])
        chosen = next_probs.gather(1, a_star).squeeze(1)
        disc = torch.full_like(reward, gamma) if discount is None else discount.float()
        m = project_distribution(chosen, reward.float(), disc, done.float(), support)
    cross_entropy = -(m * log_p_taken).sum(-1)
    value = cross_entropy.mean() if weights is None else (weights * cross_entropy).mean()
    return value, cross_entropy.detach()
