# cell: ws_frame_header
# expect: wrong
# question: ws_frame_header_length_tests
# concept: reads a 16-bit length for both 126 and 127, so frames over 64 KiB get a wrong length and header
def parse_frame_header(data):
    first, second = data[0], data[1]
    length = second & 0x7F
    offset = 2
    if length >= 126:
        length = struct.unpack("!H", data[2:4])[0]
        offset = 4
    masked = bool(second & 0x80)
    mask_key = None
    if masked:
        mask_key = bytes(data[offset:offset + 4])
        offset += 4
    return {"fin": bool(first & 0x80), "opcode": first & 0x0F, "masked": masked,
            "payload_length": length, "mask_key": mask_key, "header_length": offset}
