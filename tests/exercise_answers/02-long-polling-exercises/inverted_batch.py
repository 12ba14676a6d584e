# cell: lp_predict
# expect: wrong
# question: lp_predict_tests
# concept: turns the batch upside down: 20 events/s × 0.1 s taken as requests per event instead of events per request
PREDICTED_REQUESTS_PER_EVENT = 20 * 0.1
PREDICTED_MEAN_LATENCY_MS = 50
