# cell: q1_risk
# expect: right
# concept: the plain formula 1 - (1 - live/N)^g; for 128 bits it rounds to 0.0, which is within the tolerance
def hit_probability(bits, live, rate_per_s, seconds):
    miss = 1 - live / 2 ** bits
    return 1 - miss ** (rate_per_s * seconds)
