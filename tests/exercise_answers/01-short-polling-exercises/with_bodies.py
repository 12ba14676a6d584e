# cell: sp_header_bytes
# expect: wrong
# question: sp_header_bytes_tests
# concept: counts the bodies with the headers, so the event itself is taken for overhead
def header_bytes_per_event(messages, delivered):
    if delivered <= 0:
        raise ValueError("no event delivered")
    return (messages.header_bytes.sum() + messages.body_bytes.sum()) / delivered
