# cell: sp_header_bytes
# expect: right
# concept: adds the request side and the response side separately, then divides
def header_bytes_per_event(messages, delivered):
    if not delivered:
        raise ValueError("the header cost per event is undefined when no event was delivered")
    per_kind = messages.groupby("kind").header_bytes.sum()
    return (per_kind.get("request", 0) + per_kind.get("response", 0)) / delivered
