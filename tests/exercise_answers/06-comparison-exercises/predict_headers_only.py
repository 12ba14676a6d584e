# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: counts the polls' HTTP but not the event's own bytes, which dominate when polls carry many events
def poll_bytes_per_event(rate_eps, poll_interval_s, empty_poll_bytes, event_bytes):
    return empty_poll_bytes / (rate_eps * poll_interval_s)
