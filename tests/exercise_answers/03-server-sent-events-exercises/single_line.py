# cell: sse_framing
# expect: wrong
# question: sse_framing_tests
# concept: prices every event as one data line, so multi-line data is under-counted
def framing_bytes(data, id):
    return len(f"id: {id}\n".encode()) + len("data: \n\n")
