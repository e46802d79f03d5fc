"""The DQN training loop (Nature DQN's algorithm) and its Python API: ``train(TrainConfig(...))``.

``Trainer.step`` is the algorithm, top to bottom: collect agent steps (acting epsilon-greedily
while the learner takes the gradient steps the replay ratio owes), store the transitions, sync
the target net and count. The collector (fastdqn.run.collect) is this process's envs, or with
``--ray`` Ape-X actors. ``Trainer.run`` adds the episodes' logging, checkpoints and signals.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from fastdqn.devices import resolve_device
from fastdqn.env.spec import make_env_from_spec
from fastdqn.env.vector import WorkerDied
from fastdqn.errors import user_input
from fastdqn.learn.learner import Learner
from fastdqn.replay.buffer import ReplayBuffer
from fastdqn.run import resume as resume_mod
from fastdqn.run.checkpoint import checkpoint_state, host_copy, write_checkpoint
from fastdqn.run.collect import Collected, open_collector
from fastdqn.run.config import TrainConfig, check_fields
from fastdqn.run.evaluation import eval_spec, evaluate_policy
from fastdqn.run.late_priorities import LatePriorities
from fastdqn.run.runlog import Progress, RunLog, check_new_run_dir, default_out_dir
from fastdqn.run.signals import StopSignals
from fastdqn.run.state import RunState

# A new best waits at most this long, as a host copy, before best.pt is written: early in a run
# the bests come a few games apart, and each write (nets and Adam, ~27 MB, fsynced) cost 2.4% of
# an env-only Pong run on 2 cores.
BEST_PT_EVERY_S = 10.0


@dataclass
class TrainResult:
    out_dir: str
    frames: int
    episodes: int
    seconds: float
    solved: bool
    best_reward_100: float | None
    rewards: list = field(default_factory=list)
    interrupted: str | None = None  # "SIGINT"/"SIGTERM"/"SIGHUP" when a signal stopped the run (last.pt saved)


class Trainer:
    """One run's state. ``step()`` advances every env by one agent step (and learns);
    ``run()`` steps until --frames, solved or a signal, logging episodes. ``train()`` wraps both.
    ``resume`` is a last.pt (see fastdqn.run.resume) to continue from. The loop's counters are
    ``state`` (a RunState), the one part of the Trainer that resume writes.

    The algorithm is DQN's (a replay, a target net); ``Trainer(cfg)`` with ``cfg.algo == "pqn"``
    is a fastdqn.run.pqn_trainer.PQNTrainer, which replaces ``_build_learning`` and ``step``."""

    stores_replay = True  # the collector uploads the frames for a replay on the device

    def __new__(cls, cfg: TrainConfig, **kw):
        if cls is Trainer and getattr(cfg, "algo", "dqn") == "pqn":
            from fastdqn.run.pqn_trainer import PQNTrainer  # it imports this module

            cls = PQNTrainer
        return super().__new__(cls)

    def __init__(self, cfg: TrainConfig, *, log: bool = True, resume: dict | None = None):
        # user_input(): what the user gave is checked there (their mistake); the rest is fastdqn's
        with user_input():
            cfg.validate()
            self.cfg, self.out = cfg, cfg.out or default_out_dir(cfg.env_id)
            if log and resume is None:
                check_new_run_dir(self.out)
            device = resolve_device(cfg.device)
        if cfg.torch_threads is not None:
            torch.set_num_threads(cfg.torch_threads)
        torch.manual_seed(cfg.seed)
        self.batch_size, self.replay_ratio, lr = cfg.learning_schedule()
        self.log = self.prog = self._eval_env = None
        self.video_dir = os.path.join(self.out, "videos")
        video = (self.video_dir, cfg.capture_video) if cfg.capture_video and log else None
        replay_on_device = self.stores_replay and cfg.replay_device != "cpu" and device.type == "cuda"
        with user_input():  # the env id, its backend, a Ray cluster
            self.collector = c = open_collector(cfg, device, video, self.replay_ratio, replay_on_device)
        self._videos_logged: set = set()
        self._cudnn_benchmark = None  # CUDA: the setting before this run, which close() puts back
        try:
            if device.type == "cuda":  # static shapes: cuDNN times each conv's algorithms once, keeps the fastest
                self._cudnn_benchmark = torch.backends.cudnn.benchmark
                torch.backends.cudnn.benchmark = True
            resolved = self._build_learning(c, device, lr, replay_on_device)
            self.score_source = c.score_source(
                {"reward_bound": "reward_100", "best_pt": "eval" if cfg.eval_every else "reward_100"})
            self.config_dict = dataclasses.asdict(cfg) | {
                "out": self.out, "device_resolved": str(device), "num_workers": c.workers,
                "env_backend_resolved": c.backend, "env_protocol": c.protocol,  # what the emulators really play
                **resolved, "score_source": self.score_source}
            self.prog = Progress(cfg.frames, cfg.progress and log)
            c.notify = self.prog.print
            self.state = RunState(loss_sum=torch.zeros((), device=self.learner.device))
            self.epsilon = cfg.eps_start
            self.solved = False
            self._best_pending, self._best_written = None, time.perf_counter()  # see _keep_best
            if resume is not None:
                with user_input():  # last.pt and replay.npz as the run directory holds them
                    resume_mod.restore_trainer(self, resume)
            self._t_win, self._f_win, self._fps = time.perf_counter(), self.state.frame, 0.0  # the f/s of the log lines
            if log:  # opened last: a rejected resume leaves the run directory untouched
                with user_input():  # --track without wandb, a run directory that cannot be made or is in use
                    tracker = None
                    if cfg.track:
                        from fastdqn.run.tracking import Tracker  # the optional wandb extra

                        tracker = Tracker(project=cfg.wandb_project, entity=cfg.wandb_entity,
                                          name=cfg.wandb_name or os.path.basename(os.path.abspath(self.out)),
                                          config=self.config_dict, out_dir=self.out, resume=resume is not None)
                    self.log = RunLog(self.out, self.config_dict, tensorboard=cfg.tensorboard,
                                      resume_frame=self.state.frame if resume is not None else None, tracker=tracker,
                                      reward_curve=cfg.reward_curve)
                    if resume is not None:
                        c.resume_scores(self.log.records)
        except BaseException:
            self.close()
            raise

    frame = property(lambda self: self.state.frame, doc="agent steps so far (all envs)")
    episodes = property(lambda self: self.state.episodes, doc="games finished so far")

    # -- the algorithm ------------------------------------------------------------------------
    def _build_learning(self, c, device, lr: float, replay_on_device: bool) -> dict:
        """DQN's learner, replay and batch slots; returns what config.json records of them."""
        cfg = self.cfg
        self.learner = Learner(cfg.net_spec(c.n_actions, c.frame_shape), device=device, lr=lr, gamma=cfg.gamma,
                               loss=cfg.loss, double=cfg.double, compile=cfg.compile, graph=cfg.graph,
                               precision=cfg.precision, adam_eps=cfg.adam_eps)
        replay_device = self.learner.device if replay_on_device else None
        self.buf = ReplayBuffer(cfg.replay_size, num_envs=c.num_envs, frame_shape=c.frame_shape,
                                stack=self.learner.obs_shape[0], dtype=str(c.frame_dtype), seed=cfg.seed,
                                device=replay_device, n_step=cfg.n_step, gamma=cfg.gamma,
                                prioritized=cfg.prioritized, alpha=cfg.per_alpha, eps=cfg.per_eps)
        self._slots = [self.buf.batch_slot(self.batch_size, self.learner.device)  # what learn() samples into
                       for _ in range(cfg.graph_updates)]
        return {"replay_device_resolved": "host" if replay_device is None else str(replay_device),
                "graph_resolved": self.learner.graphed, "compile_resolved": self.learner.compiled,
                "learning_schedule": {"batch_size": self.batch_size, "replay_ratio": self.replay_ratio, "lr": lr}}

    def step(self) -> Collected:
        """Agent steps of the envs (every local env once, or one Ray chunk), plus the gradient
        steps the replay ratio owes. Returns the Collected steps (views valid until the next step)."""
        cfg, s = self.cfg, self.state
        self.epsilon = cfg.epsilon_at(s.frame)
        # The updates owed read the replay as it was before these steps, whenever the collector
        # runs them (overlapped, the emulators step meanwhile), so every collector trains alike.
        got = self.collector.collect(self.learner, s.frame, cfg.epsilon_at, self._learn_due)
        self._store(got)
        self._sync_and_count(got.agent_steps)
        return got

    def _learn_due(self) -> None:
        self.learn(self.state.take_due())

    def learn(self, updates: int) -> None:
        """Take ``updates`` gradient steps on batches sampled from the replay into batch slots on
        the learner's device, up to ``graph_updates`` at once (on CUDA one graph replay).
        Prioritized: with importance weights, and each chunk's |TD errors| set as its transitions'
        priorities one chunk late, after the next chunk is drawn, so the host never waits for the
        updates it just launched; the last before returning, so a step's updates all land before
        its transitions are stored."""
        beta = self.cfg.per_beta_at(self.state.frame)
        late = None
        while updates > 0:
            slots = self._slots[:updates]
            updates -= len(slots)
            batches = [self.buf.sample(self.batch_size, beta, out=slot) for slot in slots]
            losses, priorities = self.learner.update_many(batches, in_place=True)
            for loss in losses:
                self.state.add_loss(loss)
            if late is not None:
                self.buf.update_priorities(*late.landed())
            late = None if batches[0].indices is None else LatePriorities([b.indices for b in batches], priorities)
        if late is not None:
            self.buf.update_priorities(*late.landed())

    def _store(self, got: Collected) -> None:
        """The steps into their replay streams, in order; where an episode ended, the stream's
        next episode starts from its first frame."""
        buf, envs, s = self.buf, got.envs, got.steps
        if got.start is not None:
            buf.start_many(got.start, envs=envs)
        done, d = (s.terminated | s.truncated) if len(s.reset_frames) else None, 0  # None: no episode ended
        for t in range(s.actions.shape[0]):
            buf.add_many(s.actions[t], s.rewards[t], s.frames[t], s.terminated[t], s.truncated[t], envs=envs)
            if done is not None and done[t].any():
                n = int(done[t].sum())
                ended = np.flatnonzero(done[t]) if envs is None else envs[done[t]]
                buf.start_many(s.reset_frames[d:d + n], envs=ended)
                d += n

    def _sync_and_count(self, agent_steps: int) -> None:
        """Once learning has started: sync the target net every ``sync_target`` frames and owe
        ``replay_ratio`` gradient steps per agent step (taken at the next step)."""
        cfg, s = self.cfg, self.state
        prev = s.frame
        s.frame += agent_steps
        s.replay_frames += agent_steps
        if s.replay_frames >= cfg.replay_start and len(self.buf) >= self.batch_size:
            if prev // cfg.sync_target != s.frame // cfg.sync_target:
                self.learner.sync_target()
            s.owe_updates(agent_steps, self.replay_ratio)

    # -- episodes, checkpoints, the run -------------------------------------------------------
    def _episode(self, i: int, reward: float, length: int, extra: dict) -> None:
        s = self.state
        s.episodes += 1
        s.returns.append(reward)
        s.all_rewards.append(reward)
        now = time.perf_counter()
        if s.frame > self._f_win:  # games that end in the same step share its rate
            self._fps = (s.frame - self._f_win) / max(now - self._t_win, 1e-9)
            self._t_win, self._f_win = now, s.frame
        fps = self._fps
        loss = s.take_mean_loss()
        if loss is not None and not math.isfinite(loss):
            raise self._diverged(f"the TD loss became {loss}")
        r100 = float(np.mean(s.returns))
        score, fields = self.collector.score(reward, extra, r100)
        if self.log is not None:
            self.log.episode({"frame": s.frame, "episode": s.episodes, "reward": reward, "reward_100": r100,
                              "epsilon": self.epsilon, "fps": fps, "loss": loss, "length": length,
                              "time": now - s.t0} | extra | fields)
        if score is not None and (s.best is None or score > s.best):
            s.best = score
            if self.score_source["best_pt"] != "eval":  # with evaluations, best.pt follows them instead
                self._keep_best()
        self._write_best(when_due=True)
        if i == 0 and self.cfg.capture_video:
            self._log_new_videos()
        bound = self.cfg.reward_bound
        if self.score_source["reward_bound"] != "eval" and bound is not None and score is not None and score > bound:
            self.solved = True
        self.prog.update(s.frame, f"ep {s.episodes}  r100 {r100:6.2f}  eps {extra.get('epsilon', self.epsilon):.3f}  "
                         f"{fps:7.1f} f/s", force=True)

    def _log_new_videos(self) -> None:
        """Videos env 0 finished (complete files only: RecordEpisodes renames them when done)."""
        if self.log is None or self.log.tracker is None or not os.path.isdir(self.video_dir):
            return
        for name in sorted(set(os.listdir(self.video_dir)) - self._videos_logged):
            if name.endswith(".mp4"):
                self.log.tracker.video(os.path.join(self.video_dir, name), self.state.frame)
                self._videos_logged.add(name)

    def evaluate(self) -> dict:
        """Greedy episodes of the online net in a separate env, played as the field evaluates
        (whole games, raw scores; the same seeds every time, so evaluations compare). Logged to
        eval.jsonl and TensorBoard; best.pt follows the best mean."""
        cfg, s = self.cfg, self.state
        if self._eval_env is None:
            self._eval_env = make_env_from_spec(eval_spec(self.config_dict))
        rec = {"frame": s.frame, **evaluate_policy(self.learner.online, self._eval_env, episodes=cfg.eval_episodes,
                                                  seed=cfg.seed + 1_000_003)}
        if self.log is not None:
            self.log.evaluation(rec)
        if s.best_eval is None or rec["mean"] > s.best_eval:
            s.best_eval = rec["mean"]
            self._keep_best()
            self._write_best(when_due=True)
        bound = cfg.reward_bound
        if self.score_source["reward_bound"] == "eval" and bound is not None and rec["mean"] > bound:
            self.solved = True
        self.prog.print(f"eval at frame {s.frame:,}: mean {rec['mean']:.2f} over {cfg.eval_episodes} episodes "
                        f"(best {s.best_eval:.2f})")
        return rec

    def checkpoint(self, name: str) -> None:
        """best.pt: the nets. last.pt: the nets plus everything --resume needs (and, with
        save_replay, replay.npz written just before it)."""
        if self.log is None:
            return
        self._check_finite()
        trainer = None
        if name == "last.pt":  # env states first: a dead worker then leaves replay.npz and last.pt a pair
            trainer = resume_mod.trainer_state(self, replay_saved=self.cfg.save_replay)
            if self.cfg.save_replay:
                resume_mod.save_replay(self)
        write_checkpoint(os.path.join(self.out, name), self._checkpoint_state(trainer))

    def _checkpoint_state(self, trainer: dict | None) -> dict:
        s = self.state
        return checkpoint_state(self.learner, config=self.config_dict, trainer=trainer, frame=s.frame,
                                episode=s.episodes, reward_100=float(np.mean(s.returns)) if s.returns else None,
                                best_reward_100=s.best, best_eval=s.best_eval)

    def _check_finite(self) -> None:
        """A diverged net must not replace the last good checkpoint (one sync per save; saves are rare)."""
        if not bool(torch.stack([torch.isfinite(p).all() for p in self.learner.online.parameters()]).all()):
            raise self._diverged("the online net's weights are no longer finite")

    def _keep_best(self) -> None:
        """best.pt follows the best score: a new best is kept as a host copy of the nets that
        scored it, which ``_write_best`` writes once the last write is BEST_PT_EVERY_S old (at
        once, or at a later game's end) or when the run ends, whichever comes first."""
        if self.log is None:
            return
        self._check_finite()
        self._best_pending = host_copy(self._checkpoint_state(None))

    def _write_best(self, when_due: bool = False) -> None:
        """Write the best kept in memory, if any (``when_due``: only once BEST_PT_EVERY_S have
        passed since the last write). A failed write (disk full, a folder in the way) keeps the
        previous best.pt and the run."""
        state = self._best_pending
        if state is None or (when_due and time.perf_counter() - self._best_written < BEST_PT_EVERY_S):
            return
        self._best_pending = None
        self._best_written = time.perf_counter()
        try:
            write_checkpoint(os.path.join(self.out, "best.pt"), state)
        except OSError as e:
            self.prog.print(f"warning: could not save best.pt at frame {state['stats']['frame']:,} ({e}); "
                            "the previous one is kept, training goes on")

    def _saved_last_pt(self) -> str | None:
        last = os.path.join(self.out, "last.pt")
        return last if os.path.isfile(last) else None

    def _diverged(self, what: str) -> FloatingPointError:
        last = self._saved_last_pt()
        kept = f"{last} is the last good checkpoint" if last else "no checkpoint was saved"
        return FloatingPointError(f"training diverged at frame {self.state.frame:,}: {what} (a lower --lr may help); "
                                  f"{kept}")

    def _checkpoint_during_run(self, name: str) -> None:
        """A save that fails mid-run (disk full, a folder in the way) keeps the previous file and
        the run: hours of training are worth more than one checkpoint. The final save raises."""
        try:
            self.checkpoint(name)
        except OSError as e:
            self.prog.print(f"warning: could not save {name} at frame {self.state.frame:,} ({e}); "
                            "the previous one is kept, training goes on")

    def run(self) -> TrainResult:
        cfg, s = self.cfg, self.state
        self.prog.update(s.frame, force=True)
        with StopSignals() as stop:  # Ctrl-C/SIGTERM: finish the step, save last.pt, return
            try:
                while (cfg.frames is None or s.frame < cfg.frames) and stop.signum is None:
                    for game in self.step().games:
                        self._episode(*game)
                    if self.solved:
                        break
                    if cfg.eval_every and s.frame - s.last_eval >= cfg.eval_every:
                        s.last_eval = s.frame
                        self.evaluate()
                        if self.solved:  # solved by the evaluations (score_source)
                            break
                    if s.frame - s.last_ckpt >= cfg.checkpoint_every:
                        s.last_ckpt = s.frame
                        self._checkpoint_during_run("last.pt")
                    self.prog.update(s.frame)
                seconds = time.perf_counter() - s.t0
                if stop.signum is not None:
                    self.prog.print(f"{stop.name}: saving last.pt at frame {s.frame:,} (again to abort)")
                self.checkpoint("last.pt")
            except WorkerDied as e:  # the state is torn (an env is gone): keep the last good last.pt
                how = (f"continue from last.pt with: fastdqn train --resume {self.out}" if self._saved_last_pt()
                       else "no last.pt was saved yet")
                raise WorkerDied(f"{e}; {how}") from None
            finally:
                self._write_best()  # a best kept in memory outlives the run, however it ends
        self.prog.update(s.frame, force=True)
        self.prog.close()
        print(self._summary(seconds, stop.name))
        if stop.signum is not None:
            print(f"continue with: fastdqn train --resume {self.out}")
        return TrainResult(self.out, s.frame, s.episodes, seconds, self.solved, s.best, s.all_rewards, stop.name)

    def _summary(self, seconds: float, signal_name: str | None) -> str:
        s = self.state
        if self.solved:
            msg = f"solved in {s.frame:,} frames, {seconds / 60:.1f} minutes ({s.episodes} episodes)"
        else:
            b = "n/a" if s.best is None else f"{s.best:.2f}"
            how = f"interrupted by {signal_name}" if signal_name is not None else "stopped"
            msg = (f"{how} after {s.frame:,} frames, {seconds / 60:.1f} minutes: "
                   f"best reward_100 {b} ({s.episodes} episodes)")
        return f"{msg}; {s.frame / max(seconds, 1e-9):.0f} f/s; run dir {self.out}{self.collector.summary(seconds)}"

    def close(self) -> None:
        if self._cudnn_benchmark is not None:
            torch.backends.cudnn.benchmark = self._cudnn_benchmark
            self._cudnn_benchmark = None
        if self.prog is not None:
            self.prog.close()
        self.collector.close()
        if self._eval_env is not None:
            self._eval_env.close()
        if self.cfg.capture_video:
            self._log_new_videos()  # the last game, cut when the envs closed
        if self.log is not None:
            png = self.log.close()
            self.log = None
            if png:
                print(f"reward curve: {png}")


def train(config: TrainConfig | None = None, *, resume: str | os.PathLike | None = None,
          **overrides) -> TrainResult:
    """Train as the config says (DQN, or PQN with algo="pqn"); write the run directory; return a summary.
    ``resume=DIR`` continues the run saved in DIR (its last.pt) instead; overrides may then
    change only fastdqn.run.resume.RESUMABLE settings (e.g. frames)."""
    with user_input():  # the config, the overrides, the run directory to resume
        if resume is not None:
            if config is not None:
                raise TypeError("train: expected either a config or resume=DIR, got both")
            cfg, ckpt = resume_mod.resume_config(resume, overrides, TrainConfig)
        else:
            if config is not None and not isinstance(config, TrainConfig):
                raise TypeError(f"config: expected a TrainConfig (or None), got {type(config).__name__}")
            check_fields(overrides, "train")
            cfg, ckpt = dataclasses.replace(config or TrainConfig(), **overrides), None
    trainer = Trainer(cfg, resume=ckpt)  # its __init__ marks the user's part of the setup
    try:
        return trainer.run()
    finally:
        trainer.close()
