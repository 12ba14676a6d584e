# cell: sse_encoder
# expect: wrong
# question: sse_encoder_tests, sse_encoder_breaks_tests
# concept: writes the whole data after one "data: ", so a newline in the data ends the field and the rest is lost
def encode_sse(data, id=None, event=None, retry=None):
    text = ""
    if retry is not None:
        text += f"retry: {retry}\n"
    if id is not None:
        if "\n" in str(id) or "\r" in str(id):
            raise ValueError("line break in id")
        text += f"id: {id}\n"
    if event is not None:
        text += f"event: {event}\n"
    return (text + f"data: {data}\n\n").encode("utf-8")
