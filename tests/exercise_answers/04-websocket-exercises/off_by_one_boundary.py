# cell: ws_overhead
# expect: wrong
# question: ws_overhead_tests
# concept: puts the boundaries one byte low (< 125, < 65535): a 125-byte payload still fits the 7-bit length
def frame_overhead(payload_size, direction):
    if direction not in ("server_to_client", "client_to_server"):
        raise ValueError(direction)
    header = 2 if payload_size < 125 else 4 if payload_size < 65535 else 10
    return header + (4 if direction == "client_to_server" else 0)
