"""Loss / update step: the book chapter's batch copy pattern, the per-sample loop, torch.compile,
and the torch ops one update issues from sampling to the optimizer step."""

from __future__ import annotations

import collections
import copy

import numpy as np
import torch

from .. import baselines as bl
from fastdqn.devices import resolve_device
from fastdqn.learn import learner
from fastdqn.learn.model import QNetSpec

from ..config import BenchConfig
from ..model import Case, Table, TableSpec, ValuesSpec
from .replay import fill_chapter, fill_fastdqn

GROUP = "loss"


class Fixture:
    """One sampled batch in every representation, plus nets and an optimizer."""

    def __init__(self, cfg: BenchConfig):
        self.device = resolve_device(cfg.device)
        b = cfg.batch_size
        buf = fill_chapter(max(4 * b, 128), cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        picked = [buf.buffer[i] for i in rng.choice(len(buf), b, replace=False)]
        states, actions, rewards, dones, next_states = zip(*picked)
        self.tuples = (states, actions, rewards, dones, next_states)  # before np.array repack
        self.chapter_batch = (np.array(states), np.array(actions), np.array(rewards, dtype=np.float32),
                              np.array(dones, dtype=np.uint8), np.array(next_states))
        # The same batch as fastdqn's sample() returns it: one uint8 [B,5,84,84] window
        # (pinned when CUDA is there) with obs/next_obs as two views of it.
        s, a, r, d, ns = self.chapter_batch
        window = np.concatenate([s, ns[:, -1:]], axis=1)
        w = torch.from_numpy(np.rint(window * 255.0).astype(np.uint8))
        if torch.cuda.is_available():
            w = w.pin_memory()
        self.batch = (w[:, :-1], torch.from_numpy(a.astype(np.int64)), torch.from_numpy(r), w[:, 1:],
                      torch.from_numpy(d.astype(np.float32)))
        wd = w.to(self.device)
        self.batch_device = (wd[:, :-1], *(t.to(self.device) for t in self.batch[1:3]), wd[:, 1:],
                             self.batch[4].to(self.device))
        self.float_device = bl.chapter_to_device(self.chapter_batch, self.device)
        torch.manual_seed(cfg.seed)
        self.net = bl.ChapterDQN().to(self.device)
        self.tgt = copy.deepcopy(self.net)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=1e-4)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def step(self, loss_fn, tensors) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss_fn(self.net, self.tgt, *tensors).backward()
        self.opt.step()


def _fixture_cache(cfg: BenchConfig):
    box: dict = {}

    def get() -> Fixture:
        if "f" not in box:
            box["f"] = Fixture(cfg)
        return box["f"]
    return get


def _learner(fx, compile_: bool, mode: str | None = None):
    """A cached fastdqn Learner on the fixture's device (built on first use)."""
    f = fx()
    key = ("learner", compile_, mode)
    if key not in f.__dict__:
        f.__dict__[key] = learner.Learner(QNetSpec(6), device=f.device, compile=compile_, compile_mode=mode)
    return f.__dict__[key]


def _copy_cases(fx, full_step: bool) -> list[Case]:
    """Rows shared by the transfer-only and the full-step tables."""
    def chapter(to_device, source):
        def setup():
            f = fx()
            src = source(f)

            def run():
                t = to_device(src, f.device)
                if full_step:
                    f.step(bl.vectorised_loss, t)
                f.sync()
            return run
        return setup

    def fast(source):
        def setup():
            f = fx()
            src = source(f)
            if not full_step:
                return lambda: (learner.to_device(src, f.device), f.sync())
            lrn = _learner(fx, compile_=False)
            return lambda: (lrn.update(src), f.sync())
        return setup

    cuda = torch.cuda.is_available()
    what = "Learner.update(batch)" if full_step else "learner.to_device(batch)"
    label = f"fastdqn {what}: uint8 window, one non_blocking copy" + ("" if cuda else " (CPU: no copy)")
    gpu_label = f"fastdqn {what}: GPU-resident batch (no copy)"
    rows = [
        Case("the book chapter's pattern: torch.tensor(np.array(x)).to(device) per field, float32", role="baseline",
             setup=chapter(bl.chapter_to_device, lambda f: f.chapter_batch)),
        Case("the book chapter's pattern + one extra host copy of the obs batch", role="alternative",
             setup=chapter(lambda b, d: bl.chapter_to_device(b, d, extra_copy=True), lambda f: f.chapter_batch)),
        Case("the book chapter's pattern without np.array repack: torch.tensor(tuple of arrays)", role="alternative",
             setup=chapter(bl.list_to_device, lambda f: f.tuples)),
    ]
    rows.append(Case(label, fast(lambda f: f.batch)))
    rows.append(Case(gpu_label, fast(lambda f: f.batch_device)) if cuda
                else Case.unavailable(gpu_label, "no CUDA device"))
    return rows


def specs(cfg: BenchConfig) -> list[TableSpec]:
    fx = _fixture_cache(cfg)
    dev = resolve_device(cfg.device)
    b = cfg.batch_size
    step_note = f"one update = loss + backward + Adam step, batch {b}, Nature DQN, device {dev}"

    def loop_setup(loss_fn):
        def setup():
            f = fx()
            return lambda: (f.step(loss_fn, f.float_device), f.sync())
        return setup

    return [
        TableSpec("loss-transfer", GROUP, f"Batch to {dev}: the book chapter's copy pattern vs fastdqn (copy only)",
                  unit=f"batch({b})", cases=_copy_cases(fx, full_step=False),
                  notes=["Only the host->device part of calc_loss; the sampled batch is given."]),
        TableSpec("loss-copy", GROUP, f"Update step on {dev}: batch copy pattern", unit="update",
                  cases=_copy_cases(fx, full_step=True),
                  notes=[step_note + "; the book chapter says one extra copy can make the step 13x slower."]),
        TableSpec("loss-loop", GROUP, f"Update step on {dev}: per-sample loop vs vectorised", unit="update",
                  cases=[
                      Case("per-sample loop (one forward of each net per sample)", loop_setup(bl.loop_loss),
                           role="baseline"),
                      Case("batched forwards, per-sample TD target and error", loop_setup(bl.loop_target_loss),
                           role="alternative"),
                      Case("vectorised (the book chapter's calc_loss)", loop_setup(bl.vectorised_loss),
                           role="alternative"),
                  ],
                  notes=[step_note + "; same float32 batch already on the device in every row; the book "
                         "chapter says the vectorised loss is ~2x faster than the loop."]),
        compile_spec(cfg, fx, step_note),
        ops_spec(cfg),
    ]


def update_ops(buf, lrn, batch_size: int, slot) -> tuple[collections.Counter, collections.Counter]:
    """(top-level torch ops, of them the ones in sampling) of one prioritized update as the
    Trainer takes it: sample (into ``slot`` if given), update, set the priorities; counted by
    torch.profiler on whatever device ``lrn`` is on."""
    from torch.profiler import ProfilerActivity, profile, record_function

    def one():
        with record_function("sample"):
            batch = buf.sample(batch_size, 0.4, out=slot)
        _, priorities = lrn.update(batch, in_place=slot is not None)
        buf.update_priorities(batch.indices, priorities)

    one()  # a graphed learner captures here
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        one()
    ops = [e for e in prof.events() if e.name.startswith("aten::")]
    top = collections.Counter(e.name for e in ops if e.cpu_parent is None or e.cpu_parent.name == "sample")
    return top, collections.Counter(e.name for e in ops if e.cpu_parent is not None and e.cpu_parent.name == "sample")


def ops_spec(cfg: BenchConfig) -> ValuesSpec:
    def build() -> Table:
        dev, b = resolve_device(cfg.device), cfg.batch_size
        rows = []
        for store in (None, dev):
            buf = fill_fastdqn(max(4 * b, cfg.replay_fill), cfg.seed, device=store, prioritized=True)
            lrn = learner.Learner(QNetSpec(6), device=dev, double=True)
            for slot in (None, buf.batch_slot(b, dev)):
                top, sampling = update_ops(buf, lrn, b, slot)
                where = "host store (frames in C++)" if store is None else f"device store on {dev}"
                how = "a fresh Batch per sample (before)" if slot is None else "sample(out=batch_slot) (after)"
                rows.append([f"{where}, {how}", sum(top.values()), sum(sampling.values()),
                             top["aten::copy_"] + top["aten::to"] + top["aten::lift_fresh"]])
        return Table(id="update-ops", group=GROUP, title=f"One prioritized update's torch ops, sample to Adam, on {dev}",
                     kind="values", columns=["path", "top-level ops", "in sampling", "to / copy_ / from_numpy"],
                     formats=["text", "int", "int", "int"], cells=rows,
                     notes=["torch.profiler's top-level aten ops of sample + Learner.update + update_priorities, "
                            f"batch {b}, Double DQN; the net's own ops are the same in every row."])
    return ValuesSpec("update-ops", GROUP, "One update's torch ops", build)


def compile_spec(cfg: BenchConfig, fx, step_note: str) -> TableSpec:
    def chapter_eager():
        f = fx()
        obs, action, reward, next_obs, done = f.batch_device  # calc_loss takes the book chapter's order
        return lambda: (f.step(bl.vectorised_loss, (obs, action, reward, done, next_obs)), f.sync())

    def learner_setup(compile_, mode=None):
        def setup():
            f = fx()
            lrn = _learner(fx, compile_, mode)
            return lambda: (lrn.update(f.batch_device), f.sync())
        return setup

    cases = [Case("the book chapter's calc_loss, eager (uint8 batch on the device)", chapter_eager, role="baseline")]
    rows = [("fastdqn Learner.update, eager", False, None, None),
            ("fastdqn Learner.update, torch.compile", True, None,
             None if cfg.compile else f"skipped in --{cfg.mode} (compiling takes minutes on a CPU)"),
            ("fastdqn Learner.update, torch.compile mode='reduce-overhead' (CUDA graphs)", True,
             "reduce-overhead", None if torch.cuda.is_available() else "no CUDA device")]
    for label, comp, mode, skip in rows:
        if skip is None and comp and not cfg.compile:
            skip = f"skipped in --{cfg.mode}"
        cases.append(Case.unavailable(label, skip) if skip else Case(label, learner_setup(comp, mode)))
    return TableSpec("loss-compile", GROUP, "Update step: eager vs torch.compile", unit="update", cases=cases,
                     notes=[step_note + "; uint8 batch already on the device; compile time excluded "
                            "(warm-up call)."])
