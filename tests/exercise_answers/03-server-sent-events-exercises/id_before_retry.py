# cell: sse_encoder
# expect: wrong
# question: sse_encoder_tests
# concept: writes the fields in the order they appear in the signature's keyword list, not retry, id, event
def encode_sse(data, id=None, event=None, retry=None):
    lines = []
    if id is not None:
        if "\n" in str(id) or "\r" in str(id):
            raise ValueError("an id cannot hold a line break")
        lines.append(f"id: {id}")
    if event is not None:
        lines.append(f"event: {event}")
    if retry is not None:
        lines.append(f"retry: {retry}")
    lines += ["data: " + line for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return ("\n".join(lines) + "\n\n").encode()
