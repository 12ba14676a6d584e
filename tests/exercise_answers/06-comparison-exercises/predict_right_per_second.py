# cell: q1_predict
# expect: right
# concept: bytes per second on the wire divided by events per second
def poll_bytes_per_event(rate_eps, poll_interval_s, empty_poll_bytes, event_bytes):
    polls_per_s = 1.0 / poll_interval_s
    bytes_per_s = polls_per_s * empty_poll_bytes + rate_eps * event_bytes
    return bytes_per_s / rate_eps
