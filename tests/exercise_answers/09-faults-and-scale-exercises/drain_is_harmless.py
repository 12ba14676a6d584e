# cell: drain_predict
# expect: wrong
# question: drain_tests
# concept: "the server stays up, so nothing happens": but ticket_hash now sends the confirm elsewhere
def predict_drain(fix, transport, logins, on_drained_server):
    return {"completed": logins, "lost_logins": 0}
