# cell: sp_predict
# expect: right
# concept: numbers as a short run measures them (a little above the model: the request itself and the run's edges)
PREDICTED_MEAN_LATENCY_MS = 140
PREDICTED_WORST_LATENCY_MS = 245
PREDICTED_REQUESTS_PER_EVENT = 0.6
