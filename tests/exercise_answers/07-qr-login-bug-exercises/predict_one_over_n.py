# cell: qr_predict
# expect: wrong
# question: qr_predict_tests
# concept: uses the lesson's 1/N for servers of unequal weights (the two requests are independent draws)
def predicted_success_rate(weights):
    if not weights or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError("bad weights")
    return 1.0 / len(weights)
