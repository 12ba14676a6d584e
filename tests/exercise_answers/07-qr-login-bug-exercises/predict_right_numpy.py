# cell: qr_predict
# expect: right
# concept: the probability both independent draws pick the same server, with numpy
import numpy as np


def predicted_success_rate(weights):
    shares = np.asarray(list(weights), dtype=float)
    if shares.size == 0 or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError("weights must be non-negative, at least one positive")
    shares = shares / shares.sum()
    return float(shares @ shares)
