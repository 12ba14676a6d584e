# cell: crash_predict
# expect: wrong
# question: crash_completed_tests
# concept: a login that lost a state counts as failed: but losing "scanned" does not stop it completing
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    lost = on_dead_server if transport in ("sse", "ws") and fix != "streams" and not scan_before_fault else 0
    return {"completed": logins - lost, "lost_logins": lost}
