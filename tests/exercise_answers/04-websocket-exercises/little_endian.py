# cell: ws_frame_header
# expect: wrong
# question: ws_frame_header_length_tests
# concept: reads the extended length little-endian, the byte order of the machine, not of the network
def parse_frame_header(data):
    first, second = data[0], data[1]
    length = second & 0x7F
    offset = 2
    if length == 126:
        length = struct.unpack("<H", data[2:4])[0]
        offset = 4
    elif length == 127:
        length = struct.unpack("<Q", data[2:10])[0]
        offset = 10
    masked = bool(second & 0x80)
    mask_key = bytes(data[offset:offset + 4]) if masked else None
    return {"fin": bool(first & 0x80), "opcode": first & 0x0F, "masked": masked,
            "payload_length": length, "mask_key": mask_key, "header_length": offset + (4 if masked else 0)}
