# cell: stomp_encode
# expect: wrong
# question: stomp_encode_tests
# concept: always appends its own content-length, so a frame that has one carries it twice
def encode_stomp_frame(command, headers, body=b""):
    if isinstance(body, str):
        body = body.encode("utf-8")

    def escape(text):
        return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace(":", "\\c")

    lines = [command]
    for name, value in headers.items():
        if command not in ("CONNECT", "CONNECTED"):
            name, value = escape(name), escape(value)
        lines.append(f"{name}:{value}")
    if body:
        lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\0"
