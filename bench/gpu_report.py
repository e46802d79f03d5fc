"""The JSON plumbing of bench/gpu_pong.sh, one subcommand per job:

    gpu_report.py stage OUT NAME RC SECONDS LIMIT   add a stage's exit code and times to OUT/NAME.json
    gpu_report.py junit XML OUT_JSON                pytest's junit XML -> counts, failures, skip reasons
    gpu_report.py installed OUT_JSON --how HOW      what the install built (CUDA module or not, and why)
    gpu_report.py report OUT --run RUN_DIR --wall S --png curve.png
                                                    OUT/report.json: every OUT/*.json merged, plus the
                                                    training run's summary and reward-curve PNG

Each write replaces its file atomically (fastdqn.atomic), so a stage killed by its time limit
leaves the JSON of the stages before it whole. The training summary reads RUN_DIR/metrics.jsonl
(one line per finished episode): time to solve, agent steps/s. The PNG is drawn with matplotlib
when it is installed and with OpenCV otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from fastdqn.atomic import atomic_write


def load(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def summarise(recs: list[dict], bound: float, wall: float | None, replay_start: int) -> dict:
    s: dict = {"episodes": len(recs), "reward_bound": bound, "train_wall_s": wall}
    if not recs:
        return s
    last = recs[-1]
    s.update(frames=last["frame"], last_time_s=last["time"], last_reward_100=last["reward_100"],
             best_reward_100=max(r["reward_100"] for r in recs),
             mean_steps_per_s=last["frame"] / max(last["time"], 1e-9))
    learning = [r["fps"] for r in recs if r["frame"] > replay_start + 5000]
    if learning:  # per-episode windows once updates run at the full replay ratio
        s["learning_steps_per_s_median"] = float(np.median(learning))
    solved = next((r for r in recs if r["reward_100"] > bound), None)
    s["solved"] = solved is not None
    if solved is not None:
        s.update(solve_time_s=solved["time"], solve_frames=solved["frame"], solve_episode=solved["episode"])
    return s


def plot(recs: list[dict], path: str, title: str, bound: float) -> str | None:
    if not recs:
        return None
    from fastdqn.run.runlog import plot_rewards

    minutes = [r["time"] / 60.0 for r in recs]
    drawn = plot_rewards(recs, path, bound, x=minutes, xlabel="wall clock (minutes)", title=title)
    if drawn is None:
        rew = np.array([r["reward"] for r in recs], float)
        r100 = np.array([r["reward_100"] for r in recs], float)
        drawn = _plot_cv2(np.array(minutes), rew, r100, path, title, bound)
    return drawn


def _plot_cv2(x, rew, r100, path, title, bound):
    import cv2

    w, h, m = 800, 450, 50
    img = np.full((h, w, 3), 255, np.uint8)
    x1 = max(float(x.max()), 1e-3)

    def pt(t, r):
        return int(m + (w - 2 * m) * t / x1), int(h - m - (h - 2 * m) * (r + 21) / 42)

    for r in (-20, -10, 0, 10, 20):
        cv2.line(img, pt(0, r), pt(x1, r), (225, 225, 225), 1)
        cv2.putText(img, str(r), (8, pt(0, r)[1] + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.line(img, pt(0, bound), pt(x1, bound), (150, 150, 150), 1)
    for t, r in zip(x, rew):
        cv2.circle(img, pt(t, r), 2, (230, 170, 120), -1)
    pts = np.array([pt(t, r) for t, r in zip(x, r100)], np.int32)
    cv2.polylines(img, [pts], False, (40, 110, 230), 2)
    cv2.putText(img, title[:100], (m, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    cv2.putText(img, f"minutes (0..{x1:.1f}); dots: episode reward, line: mean of last 100",
                (m, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    cv2.imwrite(path, img)
    return path


def write_json(path: str, data: dict) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(data, indent=2).encode()), what=path)


def read_json(path: str) -> dict:
    """The dict in `path`; {} when there is none; the text, kept, when it is not a JSON object."""
    if not os.path.exists(path):
        return {}
    with open(path) as fh:
        text = fh.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return {"unreadable": f"{e}", "text": text[:2000]}
    return data if isinstance(data, dict) else {"value": data}


def merge_into(path: str, key: str, value) -> None:
    data = read_json(path)
    data[key] = value
    write_json(path, data)


def junit_summary(xml_path: str) -> dict:
    """Counts, failed tests (with the head of their message) and skip reasons from pytest's junit XML."""
    import xml.etree.ElementTree as ET

    if not os.path.exists(xml_path):
        return {"error": f"no junit XML at {xml_path}"}
    s: dict = {"passed": 0, "failed": 0, "skipped": 0, "interrupted": False, "failures": [], "skip_reasons": {}}
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        if case.get("name") is None:  # the test a time limit interrupted: pytest leaves it unnamed
            s["interrupted"] = True
            continue
        name = f"{case.get('classname')}::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        skip = case.find("skipped")
        if bad is not None:
            s["failed"] += 1
            s["failures"].append({"test": name, "message": (bad.get("message") or "")[:500]})
        elif skip is not None:
            s["skipped"] += 1
            reason = (skip.get("message") or "")[:200]
            s["skip_reasons"][reason] = s["skip_reasons"].get(reason, 0) + 1
        else:
            s["passed"] += 1
    return s


def installed(how: str) -> dict:
    """What the install built, read from the installed package (run outside the source tree)."""
    import torch

    from fastdqn import _native
    from fastdqn.frames import cuda

    return {"how": how, "fastdqn": _native.PACKAGE_DIR, "core": os.path.basename(_native.core().__file__),
            "cuda_module": _native.cuda_or_none() is not None, "cuda_module_error": _native.why_missing("_cuda"),
            "cuda_kernels_available": cuda.available(),
            "cuda_unavailable_reason": None if cuda.available() else cuda.unavailable_reason(),
            "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def report(out: str, run_dir: str | None, wall: float | None, png: str | None, title: str, bound: float,
           replay_start: int, nvidia_smi: str | None, pqn_run: str | None = None,
           pqn_wall: float | None = None) -> dict:
    res: dict = {}
    for name in sorted(os.listdir(out)):
        if name.endswith(".json") and name != "report.json":
            res[name[:-5]] = read_json(os.path.join(out, name))
    if run_dir is not None:
        recs = load(run_dir)
        res["train_summary"] = summarise(recs, bound, wall, replay_start)
        res["train_summary"]["png"] = plot(recs, png, title, bound) if png else None
    if pqn_run is not None:  # PQN learns from its first rollout: no replay start
        res["pqn_summary"] = summarise(load(pqn_run), bound, pqn_wall, 0)
    if nvidia_smi and os.path.exists(nvidia_smi):
        with open(nvidia_smi) as fh:
            res["nvidia_smi_head"] = fh.read().splitlines()[:12]
    res["stage_seconds"] = {k: v["stage"]["seconds"] for k, v in res.items()
                            if isinstance(v, dict) and isinstance(v.get("stage"), dict)}
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stage", help="add a stage's exit code and times to OUT/NAME.json")
    st.add_argument("out")
    st.add_argument("name")
    st.add_argument("rc", type=int)
    st.add_argument("seconds", type=int)
    st.add_argument("limit", type=int)
    ju = sub.add_parser("junit", help="summarise pytest's junit XML")
    ju.add_argument("xml")
    ju.add_argument("out_json")
    ins = sub.add_parser("installed", help="what the install built")
    ins.add_argument("out_json")
    ins.add_argument("--how", required=True, help="which install ran (e.g. cuda, without_cuda, dry_run)")
    rp = sub.add_parser("report", help="OUT/report.json: the stages' JSON merged, plus the training summary")
    rp.add_argument("out")
    rp.add_argument("--run", default=None, help="the training run directory (its metrics.jsonl)")
    rp.add_argument("--wall", type=float, default=None, help="wall-clock seconds of the train command")
    rp.add_argument("--png", default=None)
    rp.add_argument("--title", default="fastdqn Pong")
    rp.add_argument("--bound", type=float, default=19.0)
    rp.add_argument("--replay-start", type=int, default=10_000)
    rp.add_argument("--nvidia-smi", default=None, help="nvidia-smi's output, whose head the report keeps")
    rp.add_argument("--pqn-run", default=None, help="the PQN stage's run directory (PQN=1)")
    rp.add_argument("--pqn-wall", type=float, default=None, help="wall-clock seconds of the PQN stage")
    args = ap.parse_args(argv)
    if args.cmd == "stage":
        rec = {"rc": args.rc, "seconds": args.seconds, "limit_s": args.limit, "timed_out": args.rc in (124, 137)}
        merge_into(os.path.join(args.out, f"{args.name}.json"), "stage", rec)
    elif args.cmd == "junit":
        merge_into(args.out_json, "pytest", junit_summary(args.xml))
    elif args.cmd == "installed":
        merge_into(args.out_json, "installed", installed(args.how))
    else:
        res = report(args.out, args.run, args.wall, args.png, args.title, args.bound, args.replay_start,
                     args.nvidia_smi, args.pqn_run, args.pqn_wall)
        write_json(os.path.join(args.out, "report.json"), res)
        print(json.dumps({k: v for k, v in res.items() if k != "nvidia_smi_head"}, indent=1)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
