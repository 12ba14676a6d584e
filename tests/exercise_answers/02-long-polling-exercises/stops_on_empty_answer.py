# cell: lp_client
# expect: wrong
# question: lp_client_idle_tests
# concept: takes an empty answer (the timeout passed) for the end of the feed and stops asking
def longpoll_client(base_url, count, after=0, timeout=1.0, on_answer=None):
    received = []
    while len(received) < count:
        answer = requests.get(base_url + "/feed/longpoll", params={"after": after, "timeout": timeout},
                              timeout=timeout + 10).json()
        if on_answer is not None:
            on_answer(answer["events"])
        if not answer["events"]:
            break
        received.extend(answer["events"])
        after = answer["events"][-1]["seq"]
    return received
