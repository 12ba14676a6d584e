# cell: sse_encoder
# expect: wrong
# question: sse_encoder_breaks_tests
# concept: str.splitlines() splits at more characters than \n, \r\n and \r, and drops a line break at the end
def encode_sse(data, id=None, event=None, retry=None):
    lines = []
    if retry is not None:
        lines.append(f"retry: {retry}")
    if id is not None:
        if "\n" in str(id) or "\r" in str(id):
            raise ValueError("an id cannot hold a line break")
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines += ["data: " + line for line in (data.splitlines() or [""])]
    return ("\n".join(lines) + "\n\n").encode()
