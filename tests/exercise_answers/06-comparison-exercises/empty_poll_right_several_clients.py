# cell: q1_empty_poll
# expect: right
# concept: three polling clients for longer, the total bytes divided by the total polls
_window = comparison.measure_idle(feed, "poll", 3, 1.5, poll_interval=0.05)
_bytes = _window["bytes_per_connection_per_s"] * _window["connections"] * _window["seconds"]
_polls = _window["requests_per_connection_per_s"] * _window["connections"] * _window["seconds"]
EMPTY_POLL_BYTES = _bytes / _polls
print(f"one empty poll: {EMPTY_POLL_BYTES:.0f} bytes, both ways")
