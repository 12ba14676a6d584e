# cell: sse_encoder
# expect: wrong
# question: sse_encoder_breaks_tests
# concept: sends an id holding a line break as it is, so its second line reaches the browser as a field of its own
def encode_sse(data, id=None, event=None, retry=None):
    lines = []
    if retry is not None:
        lines.append(f"retry: {retry}")
    if id is not None:
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines += ["data: " + line for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode()
