# cell: ws_overhead
# expect: wrong
# question: ws_overhead_tests
# concept: accepts any direction, counting everything that is not client_to_server as a server frame
def frame_overhead(payload_size, direction):
    header = 2 if payload_size <= 125 else 4 if payload_size <= 65535 else 10
    return header + 4 if direction == "client_to_server" else header
