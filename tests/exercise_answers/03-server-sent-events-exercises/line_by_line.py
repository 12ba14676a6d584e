# cell: sse_resume
# expect: right
# concept: reads the stream line by line with iter_lines and handles the id, event, data and retry fields itself
def resume_client(base_url, count, last_event_id):
    got, delay_s = [], 3.0
    while True:
        try:
            response = requests.get(f"{base_url}/feed/sse", headers={"Last-Event-ID": str(last_event_id)},
                                    stream=True, timeout=(5, 30))
            kind, data, pending_id = "message", [], None
            for raw in response.iter_lines(chunk_size=1, decode_unicode=False):
                line = raw.decode("utf-8")
                if line == "":
                    if data and kind == "message":
                        got.append(json.loads("\n".join(data)))
                        if pending_id is not None:
                            last_event_id = pending_id
                        if len(got) == count:
                            response.close()
                            return got
                    kind, data = "message", []
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "data":
                    data.append(value)
                elif name == "event":
                    kind = value
                elif name == "id":
                    pending_id = value
                elif name == "retry" and value.isdigit():
                    delay_s = int(value) / 1000
            response.close()
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
            pass
        time.sleep(delay_s)
