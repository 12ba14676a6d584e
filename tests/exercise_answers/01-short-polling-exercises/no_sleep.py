# cell: sp_loop
# expect: wrong
# question: sp_loop_rate_tests
# concept: polls again at once instead of every interval_s: the same events, many times the requests
def short_poll(base_url, interval_s, count, after=0):
    events, sent = [], 0
    with requests.Session() as session:
        while len(events) < count:
            answer = session.get(base_url + "/feed/poll", params={"after": after}, timeout=10).json()
            sent += 1
            for event in answer["events"]:
                events.append(event)
                after = event["seq"]
    return events, sent
