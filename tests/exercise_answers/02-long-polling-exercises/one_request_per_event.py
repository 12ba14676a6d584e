# cell: lp_predict
# expect: wrong
# question: lp_predict_tests
# concept: keeps the idle-load rule (one request per event, latency = network time) when events outrun the client
PREDICTED_REQUESTS_PER_EVENT = 1
PREDICTED_MEAN_LATENCY_MS = 2
