"""loss group: the cases of fastdqn.bench.groups.loss under pytest-benchmark."""

GROUP = "loss"


def test_loss(run_case, spec, case):
    run_case(spec, case)
