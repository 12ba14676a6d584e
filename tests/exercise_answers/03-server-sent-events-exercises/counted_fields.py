# cell: sse_framing
# expect: right
# concept: counts the fields (id line, 7 B per data line, the blank line) and gives back the line-break bytes that were data
import re


def framing_bytes(data, id):
    lines = re.split(r"\r\n|\r|\n", data)
    break_bytes = len(data.encode("utf-8")) - sum(len(line.encode("utf-8")) for line in lines)
    return len(f"id: {id}\n".encode("utf-8")) + 7 * len(lines) + 1 - break_bytes
