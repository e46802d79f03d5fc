"""One thread adds (add_many/start_many) while another samples: every public method of the C++
store takes its mutex and sample() releases the GIL around the gather, so the two really overlap.
.ci/sanitize runs this file under ThreadSanitizer as well as ASan/UBSan."""

import os
import threading
import time

import numpy as np
import pytest

from fastdqn import ReplayBuffer
from replay_stamps import StampWriter, check_batch

STACK, BATCH = 4, 256
STEPS = int(os.environ.get("FASTDQN_THREAD_STEPS", 3000))


@pytest.mark.parametrize("device", [None, "cpu"], ids=["host", "device-store"])
def test_concurrent_add_and_sample_return_only_valid_transitions(device):
    """84x84 frames and batches of 256 (9 MB windows) also take the multi-threaded gather path.
    With a device store the frames live in a torch tensor written after the C++ bookkeeping."""
    buf = ReplayBuffer(2000, num_envs=8, frame_shape=(84, 84), stack=STACK, seed=0, device=device)
    caps = np.full(8, 250)
    writer = StampWriter(buf)
    while len(buf) < BATCH:
        writer.step()
    stop, errors, overlapped = threading.Event(), [], [0]

    def sample_loop():
        try:
            while not stop.is_set():
                written = writer.t.copy()  # lags the store's count, so its ring bound is conservative
                check_batch(buf.sample(BATCH), STACK, written, caps)
                overlapped[0] += 1
        except BaseException as e:  # re-raised in the main thread
            errors.append(e)

    sampler = threading.Thread(target=sample_loop)
    sampler.start()
    steps = 0
    try:  # keep adding until the sampler has had its turns too (thread scheduling varies, more so under TSan)
        while (steps < STEPS or overlapped[0] < 20) and steps < 50 * STEPS and not errors:
            writer.step()
            len(buf)
            steps += 1
            time.sleep(0)  # let the sampler take the GIL between its numpy checks
    finally:
        stop.set()
        sampler.join()
    if errors:
        raise errors[0]
    print(f"\nthreads: {steps} add_many steps, {overlapped[0]} concurrent samples checked")
    assert overlapped[0] >= 20, f"only {overlapped[0]} samples ran while the writer was adding"
