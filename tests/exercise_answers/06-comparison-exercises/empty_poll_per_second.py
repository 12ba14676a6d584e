# cell: q1_empty_poll
# expect: wrong
# question: q1_empty_poll_tests
# concept: takes the idle bytes per second as the bytes of one poll (forgets the polls per second)
_idle = comparison.measure_idle(feed, "poll", 2, 1.0, poll_interval=0.04)
EMPTY_POLL_BYTES = _idle["bytes_per_connection_per_s"]
print(f"one empty poll: {EMPTY_POLL_BYTES:.0f} bytes, both ways")
