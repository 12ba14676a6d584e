# cell: q1_empty_poll
# expect: wrong
# question: q1_empty_poll_tests
# concept: counts only what comes down, forgetting the request the client sends up every time
_row, _ = comparison.measure_point(feed, "poll", 40, 1, seconds=1, poll_interval=0.5)
_idle = comparison.measure_idle(feed, "poll", 2, 1.0, poll_interval=0.04)
EMPTY_POLL_BYTES = _idle["bytes_per_connection_per_s"] / _idle["requests_per_connection_per_s"] - _row["bytes_up_per_event"] / _row["requests_per_event"]
print(f"one empty poll: {EMPTY_POLL_BYTES:.0f} bytes, both ways")
