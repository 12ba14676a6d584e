# cell: qr_predict
# expect: wrong
# question: qr_predict_tests
# concept: sums the squared weights without turning them into shares first
def predicted_success_rate(weights):
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("bad weights")
    return float(sum(w * w for w in weights))
