"""env group: env steps/s into the replay buffer, ale-py AtariVectorEnv vs fastdqn VectorEnv
(cases in fastdqn/bench/groups/env.py)."""

GROUP = "env"


def test_env(run_case, spec, case):
    run_case(spec, case)
