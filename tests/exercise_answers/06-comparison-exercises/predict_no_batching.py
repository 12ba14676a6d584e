# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: at least one poll per event: forgets that one answer carries every event of the last interval
def poll_bytes_per_event(rate_eps, poll_interval_s, empty_poll_bytes, event_bytes):
    polls_per_event = max(1.0, 1 / (rate_eps * poll_interval_s))
    return polls_per_event * empty_poll_bytes + event_bytes
