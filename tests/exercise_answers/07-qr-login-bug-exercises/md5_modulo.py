# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_ring_tests
# concept: hash % N: routes each ticket consistently, but a join moves most tickets
TICKET_PATH = re.compile(r"^/(?:api/tickets|m|qr)/(?P<ticket>[^/.?]+)")


def ticket_of(path, query):
    found = TICKET_PATH.match(path)
    if found:
        return found.group("ticket")
    values = parse_qs(query or "").get("ticket")
    return values[0] if values else None


def ticket_hash(path, query, backends):
    key = ticket_of(path, query) or path
    names = sorted(backends)
    return names[int(hashlib.md5(key.encode()).hexdigest(), 16) % len(names)]
