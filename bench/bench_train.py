"""train group: seed-style training loop vs fastdqn Trainer.step (cases in fastdqn/train_bench.py)."""

GROUP = "train"


def test_train(run_case, spec, case):
    run_case(spec, case)
