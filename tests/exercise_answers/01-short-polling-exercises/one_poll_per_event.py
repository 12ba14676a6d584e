# cell: sp_predict
# expect: wrong
# question: sp_predict_tests
# concept: believes each event needs a poll of its own, so predicts one request per event when events outrun the polls
PREDICTED_MEAN_LATENCY_MS = 125
PREDICTED_WORST_LATENCY_MS = 250
PREDICTED_REQUESTS_PER_EVENT = 1
