# cell: sp_predict
# expect: wrong
# question: sp_predict_tests
# concept: takes the wait to be half the time between events (125 ms apart) instead of half the poll interval
PREDICTED_MEAN_LATENCY_MS = 1000 / 8 / 2
PREDICTED_WORST_LATENCY_MS = 1000 / 8
PREDICTED_REQUESTS_PER_EVENT = 0.5
