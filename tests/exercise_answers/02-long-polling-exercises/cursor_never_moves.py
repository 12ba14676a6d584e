# cell: lp_client
# expect: wrong
# question: lp_client_tests
# concept: the cursor never moves: every request asks from the start and the client drops the repeats itself
def longpoll_client(base_url, count, after=0, timeout=1.0, on_answer=None):
    received, seen = [], set()
    while len(received) < count:
        answer = requests.get(base_url + "/feed/longpoll", params={"after": after, "timeout": timeout},
                              timeout=timeout + 10).json()
        new = [e for e in answer["events"] if e["seq"] not in seen]
        for event in new:
            seen.add(event["seq"])
            received.append(event)
        if on_answer is not None:
            on_answer(new)
    return received[:count]
