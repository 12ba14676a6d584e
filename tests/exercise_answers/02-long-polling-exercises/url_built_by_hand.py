# cell: lp_client
# expect: right
# concept: builds the URL by hand and takes the cursor from the answer's last event, with no session
def longpoll_client(base_url, count, after=0, timeout=1.0, on_answer=None):
    got = []
    cursor = after
    while True:
        if len(got) >= count:
            return got
        batch = requests.get(f"{base_url}/feed/longpoll?after={cursor}&timeout={timeout}", timeout=timeout + 10).json()
        events = batch.get("events", [])
        if events:
            got += events
            cursor = events[-1]["seq"]
        if on_answer:
            on_answer(events)
