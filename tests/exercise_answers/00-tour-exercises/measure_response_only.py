# cell: tour_measure
# expect: wrong
# question: tour_measure_tests
# concept: measures only the response, as if the request crossed the wire for free
def exchange_bytes(base_url, path="/hello"):
    tap = start_tap(base_url)
    try:
        requests.get(tap.url + path, timeout=5)
        responses = tap.http_messages().query("kind == 'response'")
        return int(responses.header_bytes.sum()), int(responses.body_bytes.sum())
    finally:
        tap.stop()
