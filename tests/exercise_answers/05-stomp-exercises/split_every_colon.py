# cell: stomp_parse
# expect: wrong
# question: stomp_parse_tests
# concept: splits a header line at every colon, so a value holding colons is cut short
def parse_stomp_frame(data):
    head, _, rest = data.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8").split("\n")

    def unescape(text):
        out, i = "", 0
        while i < len(text):
            if text[i] == "\\":
                out += {"\\": "\\", "n": "\n", "r": "\r", "c": ":"}[text[i + 1]]
                i += 2
            else:
                out += text[i]
                i += 1
        return out

    headers = {}
    for line in lines[1:]:
        parts = line.split(":")
        headers.setdefault(unescape(parts[0]), unescape(parts[1]))
    body = rest[:int(headers["content-length"])] if "content-length" in headers else rest.split(b"\0", 1)[0]
    return {"command": lines[0], "headers": headers, "body": body}
