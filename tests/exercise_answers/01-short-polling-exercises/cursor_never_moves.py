# cell: sp_loop
# expect: wrong
# question: sp_loop_tests
# concept: the cursor never moves: every poll asks from the start again and the client drops the repeats itself
def short_poll(base_url, interval_s, count, after=0):
    events, seen, sent = [], set(), 0
    while True:
        answer = requests.get(base_url + "/feed/poll", params={"after": after}, timeout=10).json()
        sent += 1
        for event in answer["events"]:
            if event["seq"] not in seen:
                seen.add(event["seq"])
                events.append(event)
        if len(events) >= count:
            return events[:count], sent
        time.sleep(interval_s)
