"""train group: the book chapter's training loop vs fastdqn Trainer.step (cases in
fastdqn/bench/groups/train.py)."""

GROUP = "train"


def test_train(run_case, spec, case):
    run_case(spec, case)
