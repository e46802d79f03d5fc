"""`fastdqn train | eval | play | info | bench`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys

from fastdqn.env.vector import WorkerDied
from fastdqn.errors import UserError, is_user_error, user_input
from fastdqn.run import supervisor
from fastdqn.run.config import ENV_BACKENDS, POOLS, PRECISIONS, PRESETS, TrainConfig
from fastdqn.run.resume import RESUMABLE

_D = TrainConfig()  # the pong preset, for the defaults shown in --help

# (flag, config field, type, help); every default is None so the preset decides.
_TRAIN_FLAGS = [
    ("--env", "env_id", str, "any registered gymnasium id with discrete actions: Atari (v4 NoFrameskip, ALE/...-v5), "
     f"vector observations (CartPole-v1) or RGB images (default: {_D.env_id})"),
    ("--device", "device", str, "auto | cpu | cuda (default: auto = cuda when available)"),
    ("--seed", "seed", int, f"seed for the net, the envs, epsilon and replay sampling (default: {_D.seed})"),
    ("--frames", "frames", int, "stop after N agent steps (default: run until reward_100 > --reward-bound)"),
    ("--num-envs", "num_envs", int, f"environments stepped together (default: {_D.num_envs})"),
    ("--num-workers", "num_workers", int,
     "emulator threads (ale backend; default: one per core) or env worker processes (process backend; "
     "default: per core, leaving one for the learner)"),
    ("--env-backend", "env_backend", str,
     "auto | ale (ale-py's C++ threads, stepped while the learner learns) | process (any gymnasium env, "
     "snapshots for an exact --resume, videos) (default: auto = ale for Atari where it can)"),
    ("--replay-device", "replay_device", str,
     "auto | cpu | cuda: where the replay's frames live (default: auto = on the GPU when the learner is)"),
    ("--n-step", "n_step", int, "n-step returns: the discounted sum of n rewards, bootstrapped n agent steps on "
     "(default: 1, as Nature DQN)"),
    ("--per-alpha", "per_alpha", float, f"--prioritized: priority exponent (default: {_D.per_alpha})"),
    ("--per-beta", "per_beta", float,
     f"--prioritized: importance-weight exponent, annealed linearly to 1 over the run (default: {_D.per_beta})"),
    ("--per-beta-frames", "per_beta_frames", int, "--prioritized: agent steps of that annealing (default: --frames, "
     "else 1,000,000)"),
    ("--per-eps", "per_eps", float, f"--prioritized: added to |TD error| in each priority (default: {_D.per_eps:g})"),
    ("--update-scale", "update_scale", int,
     "k: batches k times larger at a replay ratio k times smaller, lr * sqrt(k) (default: 1)"),
    ("--out", "out", str, "run directory (default: runs/<env>-<time>)"),
    ("--batch-size", "batch_size", int, f"transitions per gradient step (default: {_D.batch_size})"),
    ("--replay-size", "replay_size", int, f"replay buffer capacity in transitions (default: {_D.replay_size:,})"),
    ("--replay-start", "replay_start", int, f"agent steps before learning starts (default: {_D.replay_start:,})"),
    ("--lr", "lr", float, f"Adam learning rate (default: {_D.lr:g})"),
    ("--gamma", "gamma", float, f"discount factor (default: {_D.gamma})"),
    ("--sync-target", "sync_target", int, f"agent steps between target-net syncs (default: {_D.sync_target:,})"),
    ("--eps-start", "eps_start", float, f"initial epsilon (default: {_D.eps_start})"),
    ("--eps-final", "eps_final", float, f"final epsilon (default: {_D.eps_final})"),
    ("--eps-decay-frames", "eps_decay_frames", int,
     f"agent steps of linear epsilon decay (default: {_D.eps_decay_frames:,})"),
    ("--reward-bound", "reward_bound", float,
     f"stop when the mean reward of the last 100 episodes exceeds this (default: {_D.reward_bound:g})"),
    ("--loss", "loss", str, "mse (the book chapter's) | huber (default: mse)"),
    ("--replay-ratio", "replay_ratio", float, f"gradient steps per agent step (default: {_D.replay_ratio:g})"),
    ("--precision", "precision", str, "fp32 | bf16: the forward passes under bf16 autocast, on a CPU or GPU with "
     "native bf16; weights, Adam and TD targets stay fp32 (default: fp32)"),
    ("--layout", "layout", str, "frame layout: crop (the book chapter's, 84x110 cropped) | full (84x84) "
     "(default: crop)"),
    ("--pool", "pool", str, "Atari: the order of max-pool and grey: rgb (max of the last two RGB screens, then "
     "luma: the book chapter, Nature DQN) | grey (ALE's grey screens, then max: gymnasium's "
     "AtariPreprocessing, Dopamine; faster on the ale backend) (default: rgb)"),
    ("--noop-max", "noop_max", int, "random NOOPs (1..N) after reset, 0 = off (default: 0; breakout: 30)"),
    ("--sticky-actions", "sticky_actions", float,
     "Atari: probability of repeating the previous action (default: the id's protocol, v5 0.25, v4 0)"),
    ("--max-episode-frames", "max_episode_frames", int,
     "Atari: emulator frames per episode before truncation (default: v5 108,000; v4 ale-py's default)"),
    ("--eval-every", "eval_every", int,
     "agent steps between greedy evaluations in a separate env (whole games, raw scores); best.pt follows them"),
    ("--eval-episodes", "eval_episodes", int, f"episodes per evaluation (default: {_D.eval_episodes})"),
    ("--capture-video", "capture_video", int, "record every N-th game of env 0 to <out>/videos/*.mp4 (H.264)"),
    ("--wandb-project", "wandb_project", str, f"W&B project with --track (default: {_D.wandb_project})"),
    ("--wandb-entity", "wandb_entity", str, "W&B entity (team or user) with --track (default: yours)"),
    ("--wandb-name", "wandb_name", str, "W&B run name with --track (default: the run directory's name)"),
    ("--threads", "torch_threads", int,
     "torch CPU threads (default: torch's choice; 1 is steadier on a busy shared machine)"),
    ("--actors", "actors", int, "--ray: Ray actors, one CPU each, each stepping its own vector env with its own "
     "epsilon (Ape-X: 0.4^(1 + 7i/(N-1)); one actor: the --eps-* schedule) (default: 1)"),
    ("--envs-per-actor", "envs_per_actor", int, "--ray: envs each actor steps (default: 1)"),
    ("--chunk-steps", "chunk_steps", int, f"--ray: agent steps per env in each chunk an actor sends "
     f"(default: {_D.chunk_steps})"),
    ("--weights-every", "weights_every", int, f"--ray: gradient steps between weight broadcasts to the actors "
     f"(default: {_D.weights_every})"),
    ("--actor-in-flight", "actor_in_flight", int, f"--ray: chunk requests queued per actor, how far it may run "
     f"ahead of the learner (default: {_D.actor_in_flight})"),
    ("--actor-restarts", "actor_restarts", int, f"--ray: restarts of a dead actor before the run fails "
     f"(default: {_D.actor_restarts})"),
    ("--actor-timeout", "actor_timeout", float, f"--ray: seconds an actor may send nothing before the run fails "
     f"(default: {_D.actor_timeout:g})"),
    ("--checkpoint-every", "checkpoint_every", int,
     f"agent steps between last.pt saves (default: {_D.checkpoint_every:,})"),
]
_TRAIN_SWITCHES = [  # (flag, field, value, help)
    ("--double", "double", True, "Double DQN target (argmax by the online net)"),
    ("--dueling", "dueling", True, "dueling Q-network: value and advantage streams, advantage mean-subtracted"),
    ("--prioritized", "prioritized", True, "proportional prioritized replay (Schaul et al. 2016): priorities from "
     "|TD error|, a sum tree in the C++ replay, importance-weighted loss"),
    ("--compile", "compile", True, "torch.compile the update step (with --no-graph; default: on CUDA)"),
    ("--no-compile", "compile", False, "never compile the update step"),
    ("--no-graph", "graph", False, "CUDA: run the update eagerly or compiled, not as one CUDA-graph replay"),
    ("--no-overlap", "overlap", False, "step the envs after the learner's updates, not while they run"),
    ("--episodic-life", "episodic_life", True, "a lost life ends the episode for learning (breakout preset)"),
    ("--clip-rewards", "clip_rewards", True, "clip rewards to -1, 0, 1 (breakout preset)"),
    ("--fire-reset", "fire_reset", True, "press FIRE, then action 2, after every reset and lost life, as the "
     "DeepMind wrappers do (breakout preset; Pong serves without it; runs on the process env backend)"),
    ("--no-fire-reset", "fire_reset", False, "do not press FIRE on reset (the default but for the breakout preset)"),
    ("--no-tensorboard", "tensorboard", False, "do not write TensorBoard events"),
    ("--no-reward-curve", "reward_curve", False, "do not draw reward_curve.png at the end (matplotlib takes about a "
     "second)"),
    ("--no-progress", "progress", False, "no live progress line"),
    ("--track", "track", True, "log the scalars (and --capture-video videos) to Weights & Biases, as CleanRL's "
     "--track does (pip install \"fastdqn[wandb]\"; WANDB_MODE=offline keeps it local)"),
    ("--save-replay", "save_replay", True,
     "save the replay buffer (replay.npz) with every last.pt, so --resume continues exactly"),
]


def resumable_flags() -> list[str]:
    """The flags of the settings a resumed run may change (fastdqn.run.resume.RESUMABLE), in the
    order of the flag tables: the --resume help is made from them, so it cannot drift."""
    flags = {}
    for flag, dest, *_ in _TRAIN_FLAGS + _TRAIN_SWITCHES:
        flags.setdefault(dest, []).append(flag)
    flags["ray_address"] = ["--ray ADDRESS"]
    missing = sorted(set(RESUMABLE) - flags.keys())
    if missing:
        raise RuntimeError(f"resumable settings without a flag: {missing}")
    return [f for dest in flags if dest in RESUMABLE for f in flags[dest]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastdqn", description="DQN on Atari at the speed the hardware allows.")
    sub = p.add_subparsers(dest="command", metavar="{train,eval,play,info,bench}")
    sub.required = True

    t = sub.add_parser("train", help="train DQN (the book chapter's Pong settings by default)",
                       description="Train DQN on an Atari game. Defaults are the Pong settings of the DQN "
                       "chapter of Lapan's Deep Reinforcement Learning Hands-On; "
                       "every hyperparameter has a flag. Writes config.json, metrics.jsonl, TensorBoard "
                       "events, best.pt, last.pt and reward_curve.png to the run directory. Ctrl-C or "
                       "SIGTERM or SIGHUP saves last.pt and exits; --resume DIR continues from it.",
                       epilog="exit status: 0 done, 1 the run failed, 2 bad arguments, 129/130/143 stopped by SIGHUP/SIGINT/SIGTERM "
                       "(last.pt saved)")
    t.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="hyperparameter and wrapper preset (default: pong)")
    t.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run saved in DIR (its last.pt; Ctrl-C and SIGTERM save one); only "
                   f"{', '.join(resumable_flags())} may change")
    t.add_argument("--gym-packages", dest="gym_packages", nargs="+", metavar="MOD", default=None,
                   help="modules to import before making the env (they register it), in the trainer and "
                   "in every env worker")
    for flag, dest, typ, hlp in _TRAIN_FLAGS:
        kw = {"choices": ["mse", "huber"]} if dest == "loss" else {}
        kw = {"choices": ["crop", "full"]} if dest == "layout" else kw
        kw = {"choices": ["auto", "cpu", "cuda"]} if dest in ("device", "replay_device") else kw
        kw = {"choices": list(ENV_BACKENDS)} if dest == "env_backend" else kw
        kw = {"choices": list(PRECISIONS)} if dest == "precision" else kw
        kw = {"choices": list(POOLS)} if dest == "pool" else kw
        t.add_argument(flag, dest=dest, type=typ, default=None, help=hlp, **kw)
    for flag, dest, value, hlp in _TRAIN_SWITCHES:
        t.add_argument(flag, dest=dest, action="store_const", const=value, default=None, help=hlp)
    t.add_argument("--ray", dest="ray_cli", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="Ape-X scale-out: --actors Ray actors step the envs, this process learns. ADDRESS: a "
                   "cluster's HOST:PORT, ray://HOST:PORT or auto; alone: a private cluster on this machine, "
                   "bound to 127.0.0.1 (pip install \"fastdqn[ray]\")")

    pl = sub.add_parser("play", help="play a checkpoint, print the rewards, write an mp4",
                        description="Play a trained agent greedily (or epsilon-greedy) and record a video.")
    pl.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by fastdqn train")
    pl.add_argument("--episodes", type=int, default=3, help="games to play (default: 3)")
    pl.add_argument("--video", default=None, help="write the games to this mp4 file")
    pl.add_argument("--epsilon", type=float, default=0.0, help="random-action probability (default: 0)")
    pl.add_argument("--seed", type=int, default=0, help="env seed (default: 0)")
    pl.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="(default: auto)")
    pl.add_argument("--max-steps", type=int, default=None, help="cut each game after N agent steps")
    pl.add_argument("--scale", type=int, default=2, help="video upscaling factor (default: 2)")

    ev = sub.add_parser("eval", help="evaluate a checkpoint as the field reports it (mean, std, min, max, "
                        "human-normalised)", description="Play a checkpoint at an evaluation epsilon (Nature DQN "
                        "0.05, Dopamine 0.001): whole games, raw scores. Prints mean, std, min and max, and for "
                        "Atari games the human-normalised score of the mean.")
    ev.add_argument("--checkpoint", required=True, help="a best.pt or last.pt written by fastdqn train")
    ev.add_argument("--episodes", type=int, default=30, help="episodes to play (default: 30)")
    ev.add_argument("--epsilon", type=float, default=0.05, help="random-action probability (default: 0.05)")
    ev.add_argument("--sticky-actions", type=float, default=None,
                    help="Atari: sticky-action probability (default: the one the run trained with)")
    ev.add_argument("--seed", type=int, default=0, help="env seed of the first episode (default: 0)")
    ev.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="(default: auto)")
    ev.add_argument("--max-steps", type=int, default=None, help="cut each episode after N agent steps")
    ev.add_argument("--json", default=None, metavar="OUT", help="write the summary and every episode's return and "
                    "length to this file")
    ev.add_argument("--video", default=None, metavar="OUT.mp4", help="record the first episode to this mp4")

    sub.add_parser("info", help="versions, preprocessing backends, CUDA device and kernels",
                   description="Print versions, preprocessing backends, the CUDA device and whether the "
                   "CUDA kernel module is built.")

    # fastdqn.bench is imported only when asked for; it parses its own arguments.
    # Listed for --help only: main() hands "bench ..." to fastdqn.bench before parsing.
    sub.add_parser("bench", help="run the benchmarks (fastdqn.bench; see fastdqn bench --help)")
    return p


def _ray_run(args) -> tuple[bool, str | None]:
    """(whether this `train` runs on Ray, the cluster address): --ray, or --resume of a Ray run."""
    if args.ray_cli is not None:
        return True, args.ray_cli or None
    if args.resume is not None:
        try:
            with open(os.path.join(args.resume, "config.json")) as f:
                saved = json.load(f)
        except (OSError, ValueError):  # no run there: the child says so
            return False, None
        if isinstance(saved, dict) and saved.get("ray") is True:
            return True, saved.get("ray_address")
    return False, None


def _train(args, argv: list[str]) -> int:
    from fastdqn.run.config import preset
    from fastdqn.run.estimate import cpu_notice
    from fastdqn.run.runlog import default_out_dir
    from fastdqn.run.trainer import train

    fields = {dest for _, dest, _, _ in _TRAIN_FLAGS} | {dest for _, dest, _, _ in _TRAIN_SWITCHES} | {"gym_packages"}
    overrides = {k: getattr(args, k) for k in fields if getattr(args, k) is not None}
    if args.ray_cli is not None:
        overrides |= {"ray": True} | ({"ray_address": args.ray_cli} if args.ray_cli else {})
    if args.resume is not None and args.preset is not None:
        raise UserError(f"--preset: expected no preset with --resume (the run keeps its own), got {args.preset!r}")
    cfg = None
    if args.resume is None:
        with user_input():
            cfg = preset(args.preset or "pong", **overrides)
            cfg.validate()  # before a Ray learner's child starts too: a mistake is this process's one-line error
    ray_run, address = _ray_run(args)
    if ray_run and not supervisor.supervised():  # Ray may end the learner's process: run it as a child
        return supervisor.supervise(argv, address)
    if cfg is None:
        supervisor.report("out", args.resume)
        result = train(resume=args.resume, **overrides)
    else:
        if supervisor.supervised():  # the watching process names the run directory if Ray ends this one
            cfg = dataclasses.replace(cfg, out=cfg.out or default_out_dir(cfg.env_id))
            supervisor.report("out", cfg.out)
        notice = cpu_notice(cfg)
        if notice:
            print(notice, flush=True)
        result = train(cfg)
    if result.interrupted:
        return 128 + int(getattr(signal, result.interrupted))
    return 0 if result.frames > 0 else 1


def _play(args) -> int:
    from fastdqn.play import play

    play(args.checkpoint, episodes=args.episodes, video=args.video, epsilon=args.epsilon, seed=args.seed,
         device=args.device, max_steps=args.max_steps, scale=args.scale)
    return 0


def _eval(args) -> int:
    from fastdqn.evaluate import evaluate

    evaluate(args.checkpoint, episodes=args.episodes, epsilon=args.epsilon, sticky_actions=args.sticky_actions,
             seed=args.seed, device=args.device, max_steps=args.max_steps, json_out=args.json, video=args.video)
    return 0


def _bench(argv: list[str]) -> int:
    from fastdqn.bench.cli import main as bench_main  # the one import of the bench suite outside it

    return int(bench_main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    code = 1  # an exception that escapes (a bug: Python prints its traceback) ends the run with 1
    try:
        code = _main(argv)
        return code
    except SystemExit as e:  # argparse's usage errors
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        raise
    finally:
        supervisor.report("code", code)  # a supervised Ray learner tells the CLI's process it ended itself


# Named failures of a run that was set up right: one line (the README lists them), exit 1.
RUN_FAILURES = (WorkerDied, FloatingPointError)


def _main(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        args = argparse.Namespace(command="bench")
    else:
        args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            return _bench(argv[1:])
        if args.command == "info":
            from fastdqn.info import print_info

            print_info()
            return 0
        if args.command == "train":
            return _train(args, argv)
        return {"eval": _eval, "play": _play}[args.command](args)
    except KeyboardInterrupt:
        print("fastdqn: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        users = is_user_error(e)  # raised where fastdqn checks the user's flags, config, env or files
        if os.environ.get("FASTDQN_DEBUG") or not (users or isinstance(e, RUN_FAILURES)):
            raise  # anything else is a bug: its traceback, exit 1
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"fastdqn {args.command}: error: {msg}", file=sys.stderr)
        return 2 if users else 1


if __name__ == "__main__":
    sys.exit(main())
