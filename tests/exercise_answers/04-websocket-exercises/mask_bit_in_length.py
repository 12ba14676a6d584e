# cell: ws_frame_header
# expect: wrong
# question: ws_frame_header_tests
# concept: reads the whole second byte as the length, so the MASK bit adds 128 to every client frame's length
def parse_frame_header(data):
    first, second = data[0], data[1]
    masked = second >= 128
    length, offset = second, 2
    if length == 126:
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    elif length == 127:
        length, offset = struct.unpack("!Q", data[2:10])[0], 10
    mask_key = bytes(data[offset:offset + 4]) if masked else None
    return {"fin": bool(first & 0x80), "opcode": first & 0x0F, "masked": masked, "payload_length": length,
            "mask_key": mask_key, "header_length": offset + (4 if masked else 0)}
