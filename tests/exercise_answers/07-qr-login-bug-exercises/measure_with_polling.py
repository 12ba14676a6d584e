# cell: qr_measure
# expect: wrong
# question: qr_measure_tests
# concept: measures with short polling, the one transport that is immune to the bug
def measure_success_rate(cluster, logins):
    frame = qr_bug.traffic(cluster, "poll", logins, wait_s=2.0)
    return float(frame["ok"].mean())
