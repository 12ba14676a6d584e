# cell: qr_measure
# expect: right
# concept: random users with a WebSocket channel, counted by hand
def measure_success_rate(cluster, logins):
    rows = qr_bug.traffic(cluster, "ws", logins, seed=2024, think_s=0.3)
    completed = sum(1 for ok in rows["ok"] if ok)
    return completed / len(rows)
