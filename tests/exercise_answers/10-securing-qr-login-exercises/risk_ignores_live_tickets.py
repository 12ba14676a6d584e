# cell: q1_risk
# expect: wrong
# question: q1_risk_tests
# concept: counts one target, as if only the victim's ticket were alive
def hit_probability(bits, live, rate_per_s, seconds):
    return -math.expm1(rate_per_s * seconds * math.log1p(-1 / 2 ** bits))
