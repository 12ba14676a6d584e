# cell: crash_predict
# expect: wrong
# question: crash_completed_tests
# concept: the browsers on the dead server never log in: forgets that a reopened channel reads the current state
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    loses = transport in ("sse", "ws") and fix != "streams" and not scan_before_fault
    return {"completed": logins - on_dead_server if transport != "poll" else logins,
            "lost_logins": on_dead_server if loses else 0}
