# cell: lp_predict
# expect: right
# concept: numbers as a short run measures them (a little above the model: the request time widens each gap)
PREDICTED_REQUESTS_PER_EVENT = 0.55
PREDICTED_MEAN_LATENCY_MS = 55
