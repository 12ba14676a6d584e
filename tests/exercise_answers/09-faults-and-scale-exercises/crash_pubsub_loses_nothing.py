# cell: crash_predict
# expect: wrong
# question: crash_lost_tests
# concept: "the browser reconnects, so it gets everything": a reconnect without a log gets only the current state
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    return {"completed": logins, "lost_logins": 0}
