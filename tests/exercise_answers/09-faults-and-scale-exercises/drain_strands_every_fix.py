# cell: drain_predict
# expect: wrong
# question: drain_tests
# concept: every fix strands the channels on the drained server, though a backplane reaches them wherever they are
def predict_drain(fix, transport, logins, on_drained_server):
    stranded = on_drained_server if transport in ("sse", "ws") else 0
    return {"completed": logins - stranded, "lost_logins": stranded}
