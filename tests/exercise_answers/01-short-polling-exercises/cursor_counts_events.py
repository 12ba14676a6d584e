# cell: sp_loop
# expect: wrong
# question: sp_loop_tests
# concept: the cursor is the number of events received, not the seq of the last one (wrong when after starts above 0)
def short_poll(base_url, interval_s, count, after=0):
    events, sent = [], 0
    while len(events) < count:
        answer = requests.get(base_url + "/feed/poll", params={"after": after}, timeout=10).json()
        sent += 1
        events.extend(answer["events"])
        after = len(events)
        if len(events) < count:
            time.sleep(interval_s)
    return events, sent
