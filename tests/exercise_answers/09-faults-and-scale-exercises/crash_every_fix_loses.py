# cell: crash_predict
# expect: wrong
# question: crash_lost_tests
# concept: every fix loses the missed state, forgetting that streams replays it from its log on resume
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    loses = transport in ("sse", "ws") and not scan_before_fault
    return {"completed": logins, "lost_logins": on_dead_server if loses else 0}
