# cell: lp_client
# expect: wrong
# question: lp_client_idle_tests
# concept: never tells the server its timeout, so an idle request is held for the server's default (30 s)
def longpoll_client(base_url, count, after=0, timeout=1.0, on_answer=None):
    received = []
    with requests.Session() as session:
        while len(received) < count:
            answer = session.get(base_url + "/feed/longpoll", params={"after": after}, timeout=60).json()
            for event in answer["events"]:
                received.append(event)
                after = event["seq"]
            if on_answer is not None:
                on_answer(answer["events"])
    return received
