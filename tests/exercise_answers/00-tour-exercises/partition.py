# cell: tour_byte_count
# expect: right
# concept: bytes.partition at the first empty line, counting the separator with the headers
def count_header_and_body_bytes(raw):
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        raise ValueError("no empty line: these bytes are not a whole HTTP response")
    return len(head) + len(separator), len(body)
