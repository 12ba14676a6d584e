# cell: crash_predict
# expect: wrong
# question: crash_lost_tests
# concept: treats a polling page like a held channel, though each poll reads the state from Redis
def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    loses = fix != "streams" and not scan_before_fault
    return {"completed": logins, "lost_logins": on_dead_server if loses else 0}
