"""scale group: agent steps/s into the replay from 1..N Ray actors vs the local Trainer (a values
table: rows are timed in interleaved windows, see fastdqn/bench/groups/scale.py)."""

GROUP = "scale"


def test_scale(record_values, values_spec):
    record_values(values_spec)
