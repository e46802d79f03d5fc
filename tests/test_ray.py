"""Ape-X scale-out (fastdqn.run.ray_collector) on a real local Ray cluster, bound to 127.0.0.1.

One private cluster (2 CPUs) serves the in-process tests; the fault tests start their own
(`ray start --head` in a child process) or none. Real Pong throughout, with games cut to 50
agent steps so that episodes end within seconds. Each test is bounded in steps and time.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from fastdqn.learn.learner import apex_epsilon
from fastdqn.run import TrainConfig, train
from fastdqn.run.config import ray_host_port
from replay_helpers import check_indexed
from replay_model import ReplayModel

ray = pytest.importorskip("ray")  # the test extra installs it

from fastdqn.run.ray_cluster import LOOPBACK_SWITCH, start_local  # noqa: E402
from fastdqn.run.trainer import Trainer  # noqa: E402

SHORT = dict(env_id="PongNoFrameskip-v4", max_episode_frames=200, device="cpu", torch_threads=1, progress=False,
             replay_size=2_000, replay_start=200, batch_size=16, replay_ratio=0.05, chunk_steps=10)
CHILD_ENV = os.environ | {"RAY_AUTH_MODE": "disabled", LOOPBACK_SWITCH: "0"}  # a `ray start` cluster and its driver


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    start_local(2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_cluster_listens_on_loopback_only(cluster):
    assert ray_host_port(cluster)[0] == "127.0.0.1"
    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]


def test_apex_epsilons():
    assert apex_epsilon(0, 4) == pytest.approx(0.4)
    assert apex_epsilon(3, 4) == pytest.approx(0.4 ** 8)
    assert apex_epsilon(1, 3) == pytest.approx(0.4 ** 4.5)
    with pytest.raises(ValueError, match="expected 0 <= i < n with n >= 2, got i=0, n=1"):
        apex_epsilon(0, 1)


def lag_bound(cfg: TrainConfig) -> int:
    """RayCollector.weights_lag_bound, from the config: weights_every - 1 when requested, then at most
    2 * actors * in_flight chunks stored before it, of ceil(agent steps * replay ratio) updates each."""
    per_chunk = math.ceil(cfg.chunk_steps * cfg.envs_per_actor * cfg.replay_ratio)
    return cfg.weights_every - 1 + 2 * cfg.actors * cfg.actor_in_flight * per_chunk


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in open(path)]


def test_two_actors_train_and_the_metrics_carry_both(cluster, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = TrainConfig(**SHORT, ray=True, actors=2, envs_per_actor=2, frames=1_600, out=str(out))
    result = train(cfg)
    assert result.frames >= 1_600 and not result.solved
    records = read_jsonl(out / "metrics.jsonl")
    assert {r["actor"] for r in records} == {0, 1}
    eps = {r["actor"]: r["epsilon"] for r in records}
    assert eps[0] == pytest.approx(0.4) and eps[1] == pytest.approx(0.4 ** 8)  # Ape-X's, one per actor
    assert all(0 <= r["learner_wait"] <= 1 and 0 <= r["actor_idle"] <= 1 and r["restarts"] == 0 for r in records)
    assert any(r["loss"] is not None for r in records)  # it learned on the actors' data
    assert all(0 <= r["weights_lag"] <= lag_bound(cfg) for r in records)
    # reward_bound and best.pt follow actor 1's games only (epsilon 0.4^8), not the mix
    ones = []
    for r in records:
        ones += [r["reward"]] if r["actor"] == 1 else []
        assert r["reward_100_actor"] == (pytest.approx(np.mean(ones[-100:])) if ones else None)
    scores = [r["reward_100_actor"] for r in records if r["reward_100_actor"] is not None]
    assert ones and result.best_reward_100 == pytest.approx(max(scores))
    config = json.load(open(out / "config.json"))
    assert config["ray"] and config["actors"] == 2 and config["env_backend_resolved"] == "ray/ale"
    assert config["score_source"] == {"reward_bound": "reward_100_actor", "best_pt": "reward_100_actor", "actor": 1,
                                      "epsilon": pytest.approx(0.4 ** 8)}
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()
    summary = capsys.readouterr().out
    assert re.search(rf"weights lag mean \d+, max \d+ updates \(bound {lag_bound(cfg)}\); "
                     r"reward bound and best.pt by actor 1's reward_100 \(epsilon 0.00066\)", summary), summary
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(out)).Reload().Tags()["scalars"]
    assert {"ray/learner_wait", "ray/actor_idle", "ray/restarts", "ray/weights_lag", "ray/reward_100_actor",
            "charts/episodic_return"} <= set(tags)


@pytest.mark.parametrize("source", ["reward_100_actor", "eval"])
def test_several_actors_are_solved_by_the_greedy_side_only(cluster, tmp_path, capsys, source):
    """reward_bound -1000: any score passes it. With frames=None the run stops by itself, at the
    lowest-epsilon actor's first games, or with --eval-every at the first evaluation; never at a
    game of actor 0 (epsilon 0.4), whose games may well end first."""
    out = tmp_path / "run"
    evals = dict(eval_every=400, eval_episodes=1) if source == "eval" else {}
    result = train(TrainConfig(**SHORT, ray=True, actors=2, envs_per_actor=2, reward_bound=-1000.0, out=str(out),
                               **evals))
    assert result.solved and result.interrupted is None
    records = read_jsonl(out / "metrics.jsonl")
    config = json.load(open(out / "config.json"))
    printed = capsys.readouterr().out
    if source == "eval":
        assert config["score_source"] == {"reward_bound": "eval", "best_pt": "eval"}
        assert len(read_jsonl(out / "eval.jsonl")) == 1 and result.frames >= 400
        assert records and "reward_100_actor" not in records[0]  # games ended before; they did not stop it
        assert "reward bound and best.pt by the greedy evaluations" in printed
    else:
        assert config["score_source"]["reward_bound"] == "reward_100_actor" and config["score_source"]["actor"] == 1
        ones = [r for r in records if r["actor"] == 1]
        assert ones and {r["frame"] for r in ones} == {records[-1]["frame"]}  # in the chunk of its first games
        assert all(r["reward_100_actor"] is None for r in records[:-len(ones)])
        assert records[-1]["reward_100_actor"] == pytest.approx(np.mean([r["reward"] for r in ones]))
        assert "reward bound and best.pt by actor 1's reward_100 (epsilon 0.00066)" in printed
    assert printed.startswith("solved in ") or "\nsolved in " in printed
    assert (out / "best.pt").is_file()


def replay_into(model: ReplayModel, got, k: int) -> None:
    """What the Trainer stored from one received chunk, applied to the Python model."""
    chunk = got.info['chunk']
    envs = range(chunk.actor * k, (chunk.actor + 1) * k)
    if got.info['restart']:
        for j, e in enumerate(envs):
            model.start(e, chunk.start[j])
    d = 0
    steps = chunk.steps
    for t in range(steps.actions.shape[0]):
        for j, e in enumerate(envs):
            model.add(e, int(steps.actions[t, j]), float(steps.rewards[t, j]), steps.frames[t, j],
                      bool(steps.terminated[t, j]), bool(steps.truncated[t, j]))
            if steps.terminated[t, j] or steps.truncated[t, j]:
                model.start(e, steps.reset_frames[d])
                d += 1


def test_a_killed_actor_restarts_and_the_replay_stays_true(cluster):
    """SIGKILL one actor mid-run: Ray restarts it, its streams start new episodes, and the replay
    (3-step returns, prioritized, wrapped around) is exactly the reference model fed the same chunks."""
    cfg = TrainConfig(**(SHORT | dict(replay_size=1_200)), ray=True, actors=2, envs_per_actor=2, n_step=3,
                      prioritized=True, weights_every=5)
    t = Trainer(cfg, log=False)
    k = cfg.envs_per_actor
    model = ReplayModel(t.buf.capacity, t.buf.num_envs, t.buf.stack, "zeros", n_step=3, gamma=cfg.gamma)
    try:
        killed_pid, after, deadline, versions = None, 0, time.monotonic() + 120, set()
        # until the new incarnation sent 3 chunks and the streams wrapped around the buffer
        while after < 3 or sum(len(s.frames) for s in model.streams) <= t.buf.capacity:
            assert time.monotonic() < deadline, f"no restart and wrap in 120 s (restarts {t.collector.pool.restarts})"
            got = t.step()
            replay_into(model, got, k)
            versions.add(got.info['chunk'].weights_version)
            if got.info['chunk'].actor == 0:
                if killed_pid is None and t.collector.pool.chunks[0] >= 3:
                    killed_pid = t.collector.pool.pids[0]
                    os.kill(killed_pid, signal.SIGKILL)
                elif killed_pid is not None and got.info['chunk'].pid != killed_pid:
                    assert after > 0 or got.info['restart']  # the new incarnation's first chunk restarts the streams
                    after += 1
        assert t.collector.pool.restarts == [1, 0] and t.collector.pool.pids[0] != killed_pid
        assert t.learner.updates > 0 and max(versions) >= cfg.weights_every  # new weights reached the actors
        want = model.transitions()
        assert len(t.buf) == len(want)
        check_indexed(t.buf, model)  # every stored transition, by stream and index
        allowed: dict = {}
        for obs, action, reward, next_obs, done, discount in want:
            allowed.setdefault(obs.tobytes() + next_obs.tobytes(), set()).add((action, reward, done, discount))
        b = t.buf.sample(256, 1.0)  # what the learner samples is among them
        for i in range(256):
            key = b.obs[i].numpy().tobytes() + b.next_obs[i].numpy().tobytes()
            assert (b.action[i].item(), b.reward[i].item(), b.done[i].item(), b.discount[i].item()) in allowed[key]
    finally:
        t.close()


def test_flow_control_holds_the_replay_ratio_and_logs_who_waits(cluster):
    """A learner slower than its actors keeps them waiting (each runs at most actor_in_flight
    chunks ahead) and still takes exactly replay_ratio updates per stored agent step. Only what
    flow control guarantees whatever the scheduling is asserted: the counts, each actor's order,
    the requests in flight, the bound on overtaking (so both actors send chunks) and the books
    of who waited."""
    cfg = TrainConfig(**(SHORT | dict(replay_start=100, replay_ratio=0.25)), ray=True, actors=2, actor_in_flight=1)
    t = Trainer(cfg, log=False)
    try:
        seqs, idle = {0: [], 1: []}, 0.0
        for i in range(14):
            got = t.step()
            seqs[got.info['chunk'].actor].append(got.info['chunk'].seq)
            idle += got.info['chunk'].idle_s
            assert t.collector.pool.outstanding() == [1, 1]  # exactly actor_in_flight requests each, never more
            if i >= 4:
                time.sleep(0.3)  # a slow learner: the actors wait for requests
        assert sum(t.collector.pool.chunks) == 14 and t.state.frame == 14 * cfg.chunk_steps
        assert all(s == list(range(len(s))) for s in seqs.values())  # each actor's chunks in order, none lost
        # a request overtaken twice (actors * in_flight) is waited for: within 3 chunks both actors send one
        pool = t.collector.pool
        assert pool.max_overtakes == 2 and pool.most_overtaken <= 2 and min(pool.chunks) >= 14 // 3
        wait, actor_idle, busy = t.collector.pool.waits()
        assert actor_idle == pytest.approx(idle) and busy > 0 and wait >= 0  # the time each side waited, summed
        # updates are owed from the chunk that brings the replay to replay_start on, that chunk
        # included; each chunk's are taken before the next chunk is, so the last one's are still due
        reached = -(-100 // cfg.chunk_steps) * cfg.chunk_steps
        learning = t.state.frame - reached + cfg.chunk_steps
        assert t.learner.updates == int((learning - cfg.chunk_steps) * 0.25)
        assert t.learner.updates + t.state.due == int(learning * 0.25)
    finally:
        t.close()


def test_an_actor_starts_each_chunk_with_the_newest_weights_offered(cluster):
    """A request queued behind a running chunk carries the weights current when it was sent;
    weights offered meanwhile (taken beside the running chunk) replace them when it starts."""
    cfg = TrainConfig(**(SHORT | dict(chunk_steps=300, replay_start=10**6)), ray=True, actors=1, actor_in_flight=2)
    t = Trainer(cfg, log=False)
    try:
        t.step()  # weights version 0 out, chunk 0 taken; chunks 1 and 2 requested with version 0
        state = {k: v.detach().cpu().numpy() for k, v in t.learner.online.state_dict().items()}
        # the chunks the actor had begun when it took them
        [begun] = ray.get(t.collector.pool.push_weights(10**6, t.learner.net.to_dict(), state))
        if begun > 2:
            pytest.skip("the actor had begun chunk 2 before the offer reached it")
        got = [t.step().info['chunk'] for _ in range(3)]
        assert [c.seq for c in got] == [1, 2, 3]
        assert [c.weights_version for c in got] == [10**6 if c.seq >= begun else 0 for c in got]
        assert got[1].weights_version == 10**6  # chunk 2 was requested with version 0
    finally:
        t.close()


def test_the_weights_lag_stays_bounded_while_an_actor_stalls(cluster):
    """Actor 0 is stopped (SIGSTOP) for 3 s while actor 1 goes on. Once actor 1's chunks have
    overtaken actor 0's oldest request max_overtakes times the learner waits for it, so no chunk
    is stored with weights more than weights_lag_bound updates old (without that, actor 0's
    chunks would come back with all the updates actor 1's chunks earned meanwhile)."""
    cfg = TrainConfig(**(SHORT | dict(replay_start=100, replay_ratio=0.5, batch_size=8)), ray=True, actors=2,
                      weights_every=2)
    t = Trainer(cfg, log=False)
    stopped, timer, lags, after = None, None, [], 0
    try:
        assert t.collector.weights_lag_bound == lag_bound(cfg) == 1 + 8 * 5
        deadline = time.monotonic() + 120
        while after < 6:  # actor 0's chunks after it goes on
            assert time.monotonic() < deadline, f"actor 0 sent {after} chunks within 120 s"
            got = t.step()
            lags.append(got.info['weights_lag'])
            if stopped is None and t.learner.updates > 0:  # learning: from now on updates age the weights
                stopped = t.collector.pool.pids[0]
                os.kill(stopped, signal.SIGSTOP)
                timer = threading.Timer(3.0, os.kill, (stopped, signal.SIGCONT))
                timer.start()
            elif timer is not None and not timer.is_alive() and got.info['chunk'].actor == 0:
                after += 1
        assert 0 <= min(lags) and max(lags) <= lag_bound(cfg), lags
        pool = t.collector.pool
        assert pool.most_overtaken <= pool.max_overtakes == 4 and pool.restarts == [0, 0]
        assert t.collector.lag_max == max(lags) and t.collector.lag_n == len(lags)
    finally:
        if timer is not None:
            timer.cancel()
        if stopped is not None:
            os.kill(stopped, signal.SIGCONT)
        t.close()


def test_a_ray_run_resumes_with_fresh_episodes(cluster, tmp_path, capsys):
    out = tmp_path / "run"
    first = train(TrainConfig(**SHORT, ray=True, actors=2, frames=600, save_replay=True, out=str(out)))
    capsys.readouterr()
    second = train(resume=str(out), frames=1_200)
    printed = capsys.readouterr().out
    assert f"resuming {out} at frame {first.frames:,}" in printed
    assert "replay restored" in printed and "Ray actors start fresh episodes" in printed
    assert second.frames >= 1_200 and second.episodes > first.episodes
    records = read_jsonl(out / "metrics.jsonl")
    frames = [r["frame"] for r in records]
    assert frames == sorted(frames) and frames[-1] > first.frames
    ones = []  # actor 1's reward_100 goes on from its games before the resume
    for r in records:
        ones += [r["reward"]] if r["actor"] == 1 else []
        assert r["reward_100_actor"] == (pytest.approx(np.mean(ones[-100:])) if ones else None)
    assert any(r["actor"] == 1 and r["frame"] <= first.frames for r in records)


def test_actors_past_the_cluster_cpus_are_refused(cluster, tmp_path):
    with pytest.raises(ValueError, match=r"actors: expected at most the cluster's 2 CPUs \(one per actor\), got 3"):
        train(TrainConfig(**SHORT, ray=True, actors=3, frames=100, out=str(tmp_path / "run")))


def run_cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "fastdqn", "train", *args], capture_output=True, text=True,
                          timeout=180, **kw)


def test_a_bad_address_is_a_one_line_error(tmp_path):
    port = free_port()  # nothing listens there
    r = run_cli(["--ray", f"127.0.0.1:{port}", "--frames", "100", "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"fastdqn train: error: ray: expected a Ray cluster at 127.0.0.1:{port}, got nothing answering there "
        "(Connection refused) (start one with `ray start --head`, or pass --ray alone for one on this machine)"]
    assert not (tmp_path / "run").exists()


def test_without_ray_installed_the_flag_names_the_extra(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from fastdqn.cli import main; "
            f"sys.exit(main(['train', '--ray', '--frames', '10', '--out', {str(tmp_path / 'run')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ('fastdqn train: error: ray: expected Ray installed for --ray, got none '
                                '(install the extra: pip install "fastdqn[ray]")')


def test_a_cluster_that_goes_away_is_a_clear_error(tmp_path):
    """`ray start --head` in a child process, a run on it, then the whole cluster stops: Ray
    ends the learner's process with it; fastdqn says what happened and how to go on."""
    port, out = free_port(), tmp_path / "run"
    # Ray's CLI through this interpreter (its module), not a `ray` on PATH: an un-activated venv has none
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head",
                             "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=1",
                             "--include-dashboard=false", "--disable-usage-stats", "--block"], env=CHILD_ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    run = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        run = subprocess.Popen([sys.executable, "-m", "fastdqn", "train", "--ray", f"127.0.0.1:{port}", "--frames",
                                "10000000", "--max-episode-frames", "200", "--replay-start", "100000", "--device",
                                "cpu", "--threads", "1", "--out", str(out), "--no-progress", "--checkpoint-every",
                                "200"],
                               env=CHILD_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():
            assert run.poll() is None and time.monotonic() < deadline, run.communicate(timeout=10)
            time.sleep(0.5)
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops its cluster
        _, err = run.communicate(timeout=120)
    finally:
        for p in (run, head):
            if p is not None and p.poll() is None:
                p.kill()
        head.wait(timeout=60)
    assert run.returncode == 1
    errors = [line for line in err.splitlines() if line.startswith("fastdqn train: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert re.fullmatch(rf"fastdqn train: error: ray: the Ray cluster at 127\.0\.0\.1:{port} went away .*"
                        rf"continue from last\.pt with: fastdqn train --resume {re.escape(str(out))}", errors[0])


def test_sigterm_to_a_ray_run_saves_last_pt(tmp_path):
    """The CLI's process forwards SIGTERM to the learner's: last.pt is saved, exit status 143."""
    out = tmp_path / "run"
    run = subprocess.Popen([sys.executable, "-m", "fastdqn", "train", "--ray", "--actors", "1", "--frames", "10000000",
                            "--max-episode-frames", "200", "--replay-start", "100000", "--device", "cpu", "--threads",
                            "1", "--out", str(out), "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").stat().st_size:
            assert run.poll() is None and time.monotonic() < deadline, run.communicate(timeout=10)
            time.sleep(0.5)
        run.send_signal(signal.SIGTERM)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 143, stderr
    assert "SIGTERM: saving last.pt" in stdout and f"continue with: fastdqn train --resume {out}" in stdout
    assert (out / "last.pt").is_file()
