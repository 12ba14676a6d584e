# cell: stomp_parse
# expect: right
# concept: unescapes with one regular-expression pass and reads the head line by line
import re

UNESCAPED = {"\\": "\\", "n": "\n", "r": "\r", "c": ":"}


def parse_stomp_frame(data):
    position, lines = 0, []
    while True:
        newline = data.index(b"\n", position)
        line = data[position:newline].rstrip(b"\r")
        position = newline + 1
        if not line:
            break
        lines.append(line.decode("utf-8"))
    command, headers = lines[0], {}
    for line in lines[1:]:
        name, value = line.split(":", 1)
        if command not in ("CONNECT", "CONNECTED"):
            name, value = (re.sub(r"\\(.)", lambda m: UNESCAPED[m.group(1)], part) for part in (name, value))
        if name not in headers:
            headers[name] = value
    rest = data[position:]
    size = headers.get("content-length")
    return {"command": command, "headers": headers, "body": rest[:int(size)] if size is not None else rest[:rest.index(b"\0")]}
