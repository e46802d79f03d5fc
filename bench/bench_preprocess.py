"""preprocess group: the cases of fastdqn.bench.groups.preprocess under pytest-benchmark."""

GROUP = "preprocess"


def test_preprocess(run_case, spec, case):
    run_case(spec, case)
