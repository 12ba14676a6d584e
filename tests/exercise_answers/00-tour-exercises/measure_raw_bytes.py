# cell: tour_measure
# expect: right
# concept: splits the tap's kept bytes of each direction with count_header_and_body_bytes from question 2
def exchange_bytes(base_url, path="/hello"):
    tap = start_tap(base_url)
    try:
        requests.get(tap.url + path, timeout=5)
        up_headers, up_body = count_header_and_body_bytes(tap.raw(direction="up"))
        down_headers, down_body = count_header_and_body_bytes(tap.raw(direction="down"))
    finally:
        tap.stop()
    return up_headers + down_headers, up_body + down_body
