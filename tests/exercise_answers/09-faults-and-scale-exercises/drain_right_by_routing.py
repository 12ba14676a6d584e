# cell: drain_predict
# expect: right
# concept: asks where the confirm goes and where the channel stays
def predict_drain(fix, transport, logins, on_drained_server):
    confirm_follows_ticket_ring = fix == "ticket_hash"
    channel_stays_put = transport != "poll"
    if confirm_follows_ticket_ring and channel_stays_put:
        return {"completed": logins - on_drained_server, "lost_logins": on_drained_server}
    return {"completed": logins, "lost_logins": 0}
