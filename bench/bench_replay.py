"""replay group: the cases of fastdqn.bench.groups.replay under pytest-benchmark."""

GROUP = "replay"


def test_replay(run_case, spec, case):
    run_case(spec, case)


def test_replay_memory(record_values, values_spec):
    record_values(values_spec)
