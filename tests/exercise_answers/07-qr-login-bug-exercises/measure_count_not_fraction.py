# cell: qr_measure
# expect: wrong
# question: qr_measure_tests
# concept: returns the number of logins that completed, not the fraction
def measure_success_rate(cluster, logins):
    frame = qr_bug.traffic(cluster, "sse", logins)
    return float(frame["ok"].sum())
