# cell: qr_measure
# expect: wrong
# question: qr_measure_tests
# concept: logins one after another by one test user, all-or-nothing under round robin
def measure_success_rate(cluster, logins):
    frame = qr_bug.isolated_logins(cluster, "sse", logins, wait_s=0.25)
    return float(frame["ok"].mean())
