# cell: q1_risk
# expect: wrong
# question: q1_risk_tests
# concept: adds up each guess's chance (g x live / N), which overshoots and passes 1
def hit_probability(bits, live, rate_per_s, seconds):
    return float(rate_per_s * seconds * live / 2 ** bits)
