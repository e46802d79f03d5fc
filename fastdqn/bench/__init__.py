"""fastdqn's bench suite (``fastdqn bench``): every hot path timed side by side against a
baseline after the book chapter's code (``baselines.py``). The pytest-benchmark files under
bench/ run the same cases (groups/), so each workload is defined once. Production code never
imports this package; it imports them.
"""
