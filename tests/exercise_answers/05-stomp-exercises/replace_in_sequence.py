# cell: stomp_parse
# expect: wrong
# question: stomp_unescape_tests
# concept: unescapes with one str.replace per escape, so an escaped backslash followed by c becomes a colon
def parse_stomp_frame(data):
    head, _, rest = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")

    def unescape(text):
        return text.replace("\\c", ":").replace("\\n", "\n").replace("\\r", "\r").replace("\\\\", "\\")

    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if lines[0] not in ("CONNECT", "CONNECTED"):
            name, value = unescape(name), unescape(value)
        headers.setdefault(name, value)
    body = rest[:int(headers["content-length"])] if "content-length" in headers else rest.split(b"\0", 1)[0]
    return {"command": lines[0], "headers": headers, "body": body}
