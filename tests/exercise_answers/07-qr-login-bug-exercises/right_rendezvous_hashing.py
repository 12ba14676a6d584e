# cell: qr_ticket_hash
# expect: right
# concept: rendezvous (highest random weight) hashing on md5: another consistent scheme, no ring at all
def ticket_of(path, query):
    parts = path.split("/")
    if path.startswith("/api/tickets/") and len(parts) > 3:
        return parts[3]
    if path.startswith(("/m/", "/qr/")) and len(parts) > 2:
        return parts[2].split(".")[0]
    return dict(pair.partition("=")[::2] for pair in (query or "").split("&") if pair).get("ticket") or None


def ticket_hash(path, query, backends):
    key = ticket_of(path, query) or path

    def weight(name):
        return hashlib.md5(f"{name}|{key}".encode()).digest()

    return max(sorted(backends), key=weight)
