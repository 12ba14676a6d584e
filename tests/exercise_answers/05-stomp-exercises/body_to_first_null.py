# cell: stomp_parse
# expect: wrong
# question: stomp_parse_tests
# concept: ends the body at the first NULL even when content-length says the body holds NULLs
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
        name, _, value = line.partition(":")
        headers.setdefault(unescape(name), unescape(value))
    return {"command": lines[0], "headers": headers, "body": rest.split(b"\0", 1)[0]}
