# cell: stomp_parse
# expect: wrong
# question: stomp_unescape_tests
# concept: returns the header values as they travel, still escaped
def parse_stomp_frame(data):
    head, _, rest = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name, value)
    body = rest[:int(headers["content-length"])] if "content-length" in headers else rest.split(b"\0", 1)[0]
    return {"command": lines[0], "headers": headers, "body": body}
