# cell: sse_resume
# expect: wrong
# question: sse_resume_tests
# concept: sends the number of events received as Last-Event-ID instead of the id of the last one
def resume_client(base_url, count, last_event_id):
    received, retry_ms = [], 3000
    while len(received) < count:
        header = str(last_event_id) if not received else str(len(received))
        parser = SSEParser()
        try:
            with requests.get(base_url + "/feed/sse", headers={"Last-Event-ID": header}, stream=True,
                              timeout=(5, 30)) as response:
                for chunk in response.iter_content(chunk_size=None):
                    for event in parser.feed(chunk):
                        if event.event == "message":
                            received.append(json.loads(event.data))
                            if len(received) >= count:
                                return received
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
            pass
        retry_ms = parser.retry if parser.retry is not None else retry_ms
        time.sleep(retry_ms / 1000)
    return received
