# cell: stomp_encode
# expect: wrong
# question: stomp_escape_tests
# concept: escapes the colon before the backslash, so the backslash of every \c is escaped a second time
def encode_stomp_frame(command, headers, body=b""):
    if isinstance(body, str):
        body = body.encode("utf-8")
    headers = dict(headers)
    if body and "content-length" not in headers:
        headers["content-length"] = str(len(body))

    def escape(text):
        return text.replace(":", "\\c").replace("\n", "\\n").replace("\r", "\\r").replace("\\", "\\\\")

    lines = [command]
    for name, value in headers.items():
        if command not in ("CONNECT", "CONNECTED"):
            name, value = escape(name), escape(value)
        lines.append(f"{name}:{value}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"
