# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_tests
# concept: takes "ID.png" as the ticket of /qr/ID.png and ignores ?ticket=, so the QR image and the login page go elsewhere
def ticket_of(path, query):
    parts = path.strip("/").split("/")
    if len(parts) >= 2 and parts[0] in ("m", "qr"):
        return parts[1]
    if len(parts) >= 3 and parts[:2] == ["api", "tickets"]:
        return parts[2]
    return None


def _h(text):
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def ticket_hash(path, query, backends):
    points = sorted((_h(f"{name}#{i}"), name) for name in backends for i in range(100))
    hashes = [h for h, _ in points]
    key = ticket_of(path, query) or path
    return points[bisect.bisect_left(hashes, _h(key)) % len(points)][1]
