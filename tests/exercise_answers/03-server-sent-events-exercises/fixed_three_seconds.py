# cell: sse_resume
# expect: wrong
# question: sse_retry_tests
# concept: waits a fixed 3 s (a browser's default) instead of the retry: delay the server announced
def resume_client(base_url, count, last_event_id):
    received = []
    with requests.Session() as session:
        while len(received) < count:
            parser = SSEParser()
            try:
                with session.get(base_url + "/feed/sse", headers={"Last-Event-ID": str(last_event_id)}, stream=True,
                                 timeout=(5, 30)) as response:
                    for chunk in response.iter_content(chunk_size=None):
                        for event in parser.feed(chunk):
                            if event.event == "message":
                                received.append(json.loads(event.data))
                                last_event_id = event.id
                                if len(received) >= count:
                                    return received
            except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
                pass
            time.sleep(3)
    return received
