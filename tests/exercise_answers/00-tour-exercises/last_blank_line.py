# cell: tour_byte_count
# expect: wrong
# question: tour_byte_count_tests
# concept: the headers are taken to end at the last empty line, so a body holding \r\n\r\n is split wrongly
def count_header_and_body_bytes(raw):
    end = raw.rindex(b"\r\n\r\n") + 4
    return end, len(raw) - end
