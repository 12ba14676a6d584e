# cell: ws_overhead
# expect: wrong
# question: ws_overhead_tests
# concept: forgets the 4-byte masking key every client frame carries
def frame_overhead(payload_size, direction):
    if direction not in ("server_to_client", "client_to_server"):
        raise ValueError(direction)
    if payload_size <= 125:
        return 2
    if payload_size <= 65535:
        return 4
    return 10
