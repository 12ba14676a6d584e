# cell: sse_framing
# expect: wrong
# question: sse_framing_tests
# concept: takes the id line as a fixed 6 bytes ("id: 7\n"), as if every id had one digit
def framing_bytes(data, id):
    lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    breaks = len(data.encode()) - len("".join(lines).encode())
    return 6 + 7 * len(lines) + 1 - breaks
