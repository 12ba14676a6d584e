# cell: tour_measure
# expect: wrong
# question: tour_measure_tests
# concept: counts what requests shows (header names and values, the decoded body) instead of the bytes on the wire
def exchange_bytes(base_url, path="/hello"):
    reply = requests.get(base_url + path, timeout=5)
    header_bytes = sum(len(name) + len(value) for name, value in reply.headers.items())
    header_bytes += sum(len(name) + len(value) for name, value in reply.request.headers.items())
    return header_bytes, len(reply.content)
