# cell: tour_byte_count
# expect: wrong
# question: tour_byte_count_tests
# concept: the empty line that ends the headers is counted as neither headers nor body
def count_header_and_body_bytes(raw):
    head, body = raw.split(b"\r\n\r\n", 1)
    return len(head), len(body)
