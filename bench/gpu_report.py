"""Summarise a `fastdqn train` run directory: time to solve, agent steps/s, reward-curve PNG.

    python bench/gpu_report.py RUN_DIR --bound 19 --wall SECONDS --out summary.json --png curve.png

Reads RUN_DIR/metrics.jsonl (one line per finished episode). Draws the PNG with matplotlib when
it is installed and with OpenCV otherwise (the GPU machine has OpenCV but maybe no matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--bound", type=float, default=19.0)
    ap.add_argument("--wall", type=float, default=None, help="wall-clock seconds of the train command")
    ap.add_argument("--replay-start", type=int, default=10_000)
    ap.add_argument("--title", default="fastdqn Pong")
    ap.add_argument("--out", required=True)
    ap.add_argument("--png", required=True)
    args = ap.parse_args(argv)
    recs = load(args.run_dir)
    s = summarise(recs, args.bound, args.wall, args.replay_start)
    s["png"] = plot(recs, args.png, args.title, args.bound)
    with open(args.out, "w") as fh:
        json.dump(s, fh, indent=2)
    print(json.dumps(s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
