# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_stable_tests
# concept: a consistent-hash ring on Python's salted hash(), not stable from one process to the next
TICKET_PATH = re.compile(r"^/(?:api/tickets|m|qr)/(?P<ticket>[^/.?]+)")


def ticket_of(path, query):
    found = TICKET_PATH.match(path)
    if found:
        return found.group("ticket")
    values = parse_qs(query or "").get("ticket")
    return values[0] if values else None


def ticket_hash(path, query, backends):
    points = sorted((hash(f"{name}#{i}"), name) for name in backends for i in range(100))
    hashes = [h for h, _ in points]
    key = ticket_of(path, query) or path
    return points[bisect.bisect_left(hashes, hash(key)) % len(points)][1]
