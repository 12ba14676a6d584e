# cell: q1_risk
# expect: wrong
# question: q1_risk_tests
# concept: "safe if the expected time to a hit is longer than the window", a yes/no instead of a probability
def hit_probability(bits, live, rate_per_s, seconds):
    expected = (2 ** bits + 1) / (live + 1) / rate_per_s
    return 0.0 if expected > seconds else 1.0
