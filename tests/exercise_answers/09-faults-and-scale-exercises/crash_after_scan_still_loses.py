# cell: crash_predict
# expect: wrong
# question: crash_lost_tests
# concept: a crash after the scan loses too: but the only state missed then is the last, which the reconnect reads
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    loses = transport in ("sse", "ws") and fix != "streams"
    return {"completed": logins, "lost_logins": on_dead_server if loses else 0}
