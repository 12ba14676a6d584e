# cell: stomp_encode
# expect: wrong
# question: stomp_encode_tests
# concept: content-length counts the characters of a str body, not the bytes that travel
def encode_stomp_frame(command, headers, body=b""):
    headers = dict(headers)
    if body and "content-length" not in headers:
        headers["content-length"] = str(len(body))
    if isinstance(body, str):
        body = body.encode("utf-8")

    def escape(text):
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")

    lines = [command]
    for name, value in headers.items():
        if command not in ("CONNECT", "CONNECTED"):
            name, value = escape(name), escape(value)
        lines.append(f"{name}:{value}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"
