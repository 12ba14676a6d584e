# cell: ws_overhead
# expect: right
# concept: derives the size of the length field from the largest length each field can hold
def frame_overhead(payload_size, direction):
    masks = {"server_to_client": 0, "client_to_server": 4}
    if direction not in masks:
        raise ValueError(f"unknown direction {direction!r}")
    for largest, length_bytes in ((125, 0), (2 ** 16 - 1, 2), (2 ** 64 - 1, 8)):
        if payload_size <= largest:
            return 2 + length_bytes + masks[direction]
    raise ValueError("payload too large for one frame")
