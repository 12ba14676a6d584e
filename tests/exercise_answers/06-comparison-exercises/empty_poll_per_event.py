# cell: q1_empty_poll
# expect: wrong
# question: q1_empty_poll_tests
# concept: measures bytes per delivered event while polling, which carries several empty polls and the event too
_row, _ = comparison.measure_point(feed, "poll", 1, 1, seconds=2, poll_interval=0.25)
EMPTY_POLL_BYTES = _row["bytes_down_per_event"] + _row["bytes_up_per_event"]
print(f"one empty poll: {EMPTY_POLL_BYTES:.0f} bytes, both ways")
