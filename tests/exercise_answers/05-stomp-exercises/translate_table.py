# cell: stomp_encode
# expect: right
# concept: escapes with str.translate (one pass, so the order cannot go wrong) and joins bytes
ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", ":": "\\c"})


def encode_stomp_frame(command, headers, body=b""):
    payload = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    pairs = list(headers.items())
    if payload and not any(name == "content-length" for name, _ in pairs):
        pairs.append(("content-length", str(len(payload))))
    raw = command in ("CONNECT", "CONNECTED")
    head = [command] + [name + ":" + value if raw else name.translate(ESCAPES) + ":" + value.translate(ESCAPES)
                        for name, value in pairs]
    return b"\n".join(line.encode("utf-8") for line in head) + b"\n\n" + payload + b"\x00"
