# cell: sp_loop
# expect: wrong
# question: sp_loop_rate_tests
# concept: counts only the polls that brought events, as if an empty answer cost nothing
def short_poll(base_url, interval_s, count, after=0):
    events, useful = [], 0
    with requests.Session() as session:
        while True:
            answer = session.get(base_url + "/feed/poll", params={"after": after}, timeout=10).json()
            if answer["events"]:
                useful += 1
            for event in answer["events"]:
                events.append(event)
                after = event["seq"]
            if len(events) >= count:
                return events, useful
            time.sleep(interval_s)
