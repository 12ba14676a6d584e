# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: polls per event taken as rate x interval (events per poll), upside down
def poll_bytes_per_event(rate_eps, poll_interval_s, empty_poll_bytes, event_bytes):
    return rate_eps * poll_interval_s * empty_poll_bytes + event_bytes
