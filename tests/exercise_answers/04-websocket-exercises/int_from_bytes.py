# cell: ws_frame_header
# expect: right
# concept: reads the extended lengths with int.from_bytes and the flags with shifts
def parse_frame_header(data):
    fin = (data[0] >> 7) == 1
    opcode = data[0] & 0b1111
    masked = (data[1] >> 7) == 1
    length = data[1] & 0b0111_1111
    position = 2
    extra = {126: 2, 127: 8}.get(length, 0)
    if extra:
        length = int.from_bytes(data[position:position + extra], "big")
        position += extra
    key = None
    if masked:
        key = bytes(data[position:position + 4])
        position += 4
    return dict(fin=fin, opcode=opcode, masked=masked, payload_length=length, mask_key=key, header_length=position)
