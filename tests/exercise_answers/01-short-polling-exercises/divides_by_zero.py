# cell: sp_header_bytes
# expect: wrong
# question: sp_header_bytes_tests
# concept: with no event delivered it divides by zero (infinite cost) instead of saying the cost is undefined
def header_bytes_per_event(messages, delivered):
    return float(messages.header_bytes.sum()) / delivered if delivered else float("inf")
