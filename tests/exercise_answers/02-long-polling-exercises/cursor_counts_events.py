# cell: lp_client
# expect: wrong
# question: lp_client_tests
# concept: the cursor is the number of events received, not the seq of the last one (wrong when after starts above 0)
def longpoll_client(base_url, count, after=0, timeout=1.0, on_answer=None):
    received = []
    while len(received) < count:
        answer = requests.get(base_url + "/feed/longpoll", params={"after": after, "timeout": timeout},
                              timeout=timeout + 10).json()
        received.extend(answer["events"])
        after = len(received)
        if on_answer is not None:
            on_answer(answer["events"])
    return received[:count]
