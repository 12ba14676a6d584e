# cell: ws_frame_header
# expect: wrong
# question: ws_frame_header_tests
# concept: takes every frame for a whole message (FIN always true), so fragments are not recognised
def parse_frame_header(data):
    length, offset = data[1] & 0x7F, 2
    if length == 126:
        length, offset = struct.unpack("!H", data[2:4])[0], 4
    elif length == 127:
        length, offset = struct.unpack("!Q", data[2:10])[0], 10
    masked = bool(data[1] & 0x80)
    mask_key = bytes(data[offset:offset + 4]) if masked else None
    return {"fin": True, "opcode": data[0] & 0x0F, "masked": masked, "payload_length": length,
            "mask_key": mask_key, "header_length": offset + (4 if masked else 0)}
