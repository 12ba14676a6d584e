# cell: stomp_encode
# expect: wrong
# question: stomp_escape_tests
# concept: escapes the headers of every frame, CONNECT included, which STOMP 1.2 writes as they are
def encode_stomp_frame(command, headers, body=b""):
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = dict(headers)
    if body and "content-length" not in headers:
        headers["content-length"] = str(len(body))

    def escape(text):
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")

    lines = [command] + [f"{escape(name)}:{escape(value)}" for name, value in headers.items()]
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"
