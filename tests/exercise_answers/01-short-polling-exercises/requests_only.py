# cell: sp_header_bytes
# expect: wrong
# question: sp_header_bytes_tests
# concept: counts the requests' headers only, as if the answers came without headers
def header_bytes_per_event(messages, delivered):
    if delivered <= 0:
        raise ValueError("no event delivered")
    return messages[messages.kind == "request"].header_bytes.sum() / delivered
