# cell: sse_resume
# expect: wrong
# question: sse_resume_tests
# concept: reconnects with the Last-Event-ID it started with and drops the replayed repeats itself
def resume_client(base_url, count, last_event_id):
    received, seen, retry_ms = [], set(), 3000
    while len(received) < count:
        parser = SSEParser()
        try:
            with requests.get(base_url + "/feed/sse", headers={"Last-Event-ID": str(last_event_id)}, stream=True,
                              timeout=(5, 30)) as response:
                for chunk in response.iter_content(chunk_size=None):
                    for event in parser.feed(chunk):
                        if event.event == "message" and event.id not in seen:
                            seen.add(event.id)
                            received.append(json.loads(event.data))
                            if len(received) >= count:
                                return received
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
            pass
        retry_ms = parser.retry if parser.retry is not None else retry_ms
        time.sleep(retry_ms / 1000)
    return received
