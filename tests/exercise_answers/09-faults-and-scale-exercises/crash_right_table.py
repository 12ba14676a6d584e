# cell: crash_predict
# expect: right
# concept: the same rule written as three questions: is there a channel to lose, a log to replay, a state still to miss?
REPLAYS_FROM_A_LOG = {"streams"}
HOLDS_A_CHANNEL = {"sse", "ws"}


def predict_crash(fix, transport, logins, on_dead_server, scan_before_fault):
    result = {"completed": logins, "lost_logins": 0}
    if transport not in HOLDS_A_CHANNEL or fix in REPLAYS_FROM_A_LOG:
        return result
    if scan_before_fault:   # only 'confirmed' comes while away, and the reconnect reads it
        return result
    result["lost_logins"] = on_dead_server
    return result
