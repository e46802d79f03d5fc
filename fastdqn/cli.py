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
from fastdqn.run.config import PRESETS, RESUMABLE, TrainConfig
from fastdqn.run.knobs import argparse_arguments, flags_of

KNOB_FIELDS = [f for f in dataclasses.fields(TrainConfig) if flags_of(f)]  # the fields a train flag sets


def resumable_flags() -> list[str]:
    """The flags of the settings a resumed run may change (RESUMABLE), in the fields' order: the
    --resume help is made from them, so it cannot drift."""
    flags = {f.name: flags_of(f) for f in KNOB_FIELDS} | {"ray_address": ["--ray ADDRESS"]}  # --ray's, below
    missing = sorted(set(RESUMABLE) - flags.keys())
    if missing:
        raise RuntimeError(f"resumable settings without a flag: {missing}")
    return [flag for f in dataclasses.fields(TrainConfig) if f.name in RESUMABLE for flag in flags[f.name]]


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
    for f in KNOB_FIELDS:  # each flag as its field declares it (fastdqn.run.knobs)
        for flag, kwargs in argparse_arguments(f):
            t.add_argument(flag, **kwargs)
    # One flag for two fields (ray, ray_address), so written here rather than declared on either.
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

    overrides = {f.name: getattr(args, f.name) for f in KNOB_FIELDS if getattr(args, f.name) is not None}
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
