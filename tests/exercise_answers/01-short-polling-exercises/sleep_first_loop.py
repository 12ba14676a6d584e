# cell: sp_loop
# expect: right
# concept: a loop that tests before each poll and sleeps between polls, with plain requests.get and no session
def short_poll(base_url, interval_s, count, after=0):
    received, sent = [], 0
    cursor = after
    while len(received) < count:
        if sent:
            time.sleep(interval_s)
        batch = requests.get(f"{base_url}/feed/poll?after={cursor}", timeout=10).json()["events"]
        sent += 1
        received += batch
        if batch:
            cursor = batch[-1]["seq"]
    return received, sent
