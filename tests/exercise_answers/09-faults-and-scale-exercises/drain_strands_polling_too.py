# cell: drain_predict
# expect: wrong
# question: drain_tests
# concept: ticket_hash strands polling pages too, though their next poll goes to a server still in rotation
def predict_drain(fix, transport, logins, on_drained_server):
    stranded = on_drained_server if fix == "ticket_hash" else 0
    return {"completed": logins - stranded, "lost_logins": stranded}
