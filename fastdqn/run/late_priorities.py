"""Prioritized replay's new priorities on their way back to the replay, one chunk of updates late
(docs/design.md, Past Nature DQN): the Trainer applies them after the next chunk is drawn."""

from __future__ import annotations

import torch


class LatePriorities:
    """Updates' new priorities on their way to the host: on CUDA non_blocking copies into pinned
    memory and an event, waited for only when they are applied (a graphed update's outputs are
    overwritten by the next replay, which the copies precede on the stream)."""

    def __init__(self, indices: list, priorities: list):
        self.indices = indices[0] if len(indices) == 1 else torch.cat(indices)
        self.ready = None
        if priorities[0].device.type == "cuda":
            self.host = torch.empty((len(priorities), *priorities[0].shape), dtype=priorities[0].dtype,
                                    pin_memory=True)
            for row, p in zip(self.host, priorities):
                row.copy_(p, non_blocking=True)
            self.host = self.host.view(-1)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:  # eager updates' own tensors, new each call
            self.host = priorities[0] if len(priorities) == 1 else torch.cat(priorities)

    def landed(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.ready is not None:
            self.ready.synchronize()
        return self.indices, self.host
