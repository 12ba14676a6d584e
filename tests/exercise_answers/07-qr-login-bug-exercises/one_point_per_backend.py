# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_ring_tests
# concept: a ring with one point per backend: consistent, but the shares are far from equal
TICKET_PATH = re.compile(r"^/(?:api/tickets|m|qr)/(?P<ticket>[^/.?]+)")


def ticket_of(path, query):
    found = TICKET_PATH.match(path)
    if found:
        return found.group("ticket")
    values = parse_qs(query or "").get("ticket")
    return values[0] if values else None


def _h(text):
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def ticket_hash(path, query, backends):
    points = sorted((_h(name), name) for name in backends)
    hashes = [h for h, _ in points]
    key = ticket_of(path, query) or path
    return points[bisect.bisect_left(hashes, _h(key)) % len(points)][1]
