# cell: qr_predict
# expect: wrong
# question: qr_predict_tests
# concept: the chance the channel lands on the biggest server, not the chance both requests land together
def predicted_success_rate(weights):
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("bad weights")
    return max(weights) / sum(weights)
