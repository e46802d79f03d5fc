"""best.pt follows the best score with at most one write per BEST_PT_EVERY_S: a best that comes
sooner waits as a host copy of the nets that scored it, and reaches the disk when that time has
passed or when the run ends."""

import torch

import fastdqn.run.trainer as trainer_mod
from fastdqn.run import preset
from fastdqn.run.checkpoint import load_checkpoint
from fastdqn.run.trainer import Trainer


def _trainer(tmp_path, **kw):
    cfg = preset("cartpole", out=str(tmp_path / "run"), num_envs=1, frames=1, eval_every=None, progress=False,
                 tensorboard=False, reward_curve=False, torch_threads=1, **kw)
    return Trainer(cfg)


def _online(path) -> dict:
    return load_checkpoint(path)["online"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_best_that_waits_is_written_at_the_end_with_the_nets_that_scored_it(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "BEST_PT_EVERY_S", 1e9)
    t = _trainer(tmp_path)
    best = t.out + "/best.pt"
    t._episode(0, 30.0, 30, {})  # the first best: kept in memory
    scored = {k: v.clone() for k, v in t.learner.online.state_dict().items()}
    with torch.no_grad():
        for p in t.learner.online.parameters():
            p.add_(1.0)  # the nets move on after the best
    t._episode(0, 9.0, 9, {})  # r100 drops: no new best
    assert not (tmp_path / "run" / "best.pt").exists()
    t.run()  # one agent step (no CartPole game ends in one), then the run's end writes the best kept
    ckpt = load_checkpoint(best)
    assert _same(ckpt["online"], scored)
    assert not _same(ckpt["online"], t.learner.online.state_dict())
    assert ckpt["stats"]["reward_100"] == 30.0 and ckpt["stats"]["best_reward_100"] == 30.0
    t.close()


def test_a_best_is_written_at_once_when_the_last_write_is_old_enough(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "BEST_PT_EVERY_S", 1e9)
    t = _trainer(tmp_path)
    t._episode(0, 30.0, 30, {})
    assert not (tmp_path / "run" / "best.pt").exists()
    monkeypatch.setattr(trainer_mod, "BEST_PT_EVERY_S", 0.0)
    t._episode(0, 9.0, 9, {})  # no new best, but the one kept is due: written at this game's end
    assert load_checkpoint(tmp_path / "run" / "best.pt")["stats"]["best_reward_100"] == 30.0
    t._episode(0, 60.0, 60, {})  # r100 (30 + 9 + 60) / 3 = 33: a new best, written at once
    assert load_checkpoint(tmp_path / "run" / "best.pt")["stats"]["best_reward_100"] == 33.0
    assert _same(_online(tmp_path / "run" / "best.pt"), t.learner.online.state_dict())
    t.close()


def test_a_best_kept_in_memory_is_a_copy_not_the_live_nets(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_mod, "BEST_PT_EVERY_S", 1e9)
    t = _trainer(tmp_path)
    t._episode(0, 30.0, 30, {})
    live = dict(t.learner.online.named_parameters())
    kept = t._best_pending["online"]
    assert all(kept[k].data_ptr() != live[k].data_ptr() for k in live)
    t.close()
