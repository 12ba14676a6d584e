# cell: tour_byte_count
# expect: wrong
# question: tour_byte_count_tests
# concept: the response is decoded to text, so the body is counted in characters instead of bytes
def count_header_and_body_bytes(raw):
    text = raw.decode("utf-8")
    head, body = text.split("\r\n\r\n", 1)
    return len(head) + 4, len(body)
