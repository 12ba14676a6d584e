# cell: sse_encoder
# expect: right
# concept: splits the data with a regular expression of the three line breaks, and builds bytes piece by piece
import re


def encode_sse(data, id=None, event=None, retry=None):
    out = b""
    if retry is not None:
        out += b"retry: %d\n" % int(retry)
    if id is not None:
        if re.search(r"[\r\n]", str(id)):
            raise ValueError(f"an SSE id cannot contain a line break: {id!r}")
        out += f"id: {id}\n".encode()
    if event is not None:
        out += f"event: {event}\n".encode()
    for line in re.split(r"\r\n|\r|\n", str(data)):
        out += b"data: " + line.encode("utf-8") + b"\n"
    return out + b"\n"
