# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: one exchange per event, as if short polling were long polling
def poll_bytes_per_event(rate_eps, poll_interval_s, empty_poll_bytes, event_bytes):
    return empty_poll_bytes + event_bytes
