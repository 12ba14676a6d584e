# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_tests, qr_ticket_hash_cluster_tests
# concept: spreads requests at random (load balancing), which is exactly what separates a ticket's requests
def ticket_of(path, query):
    found = re.match(r"^/(?:api/tickets|m|qr)/([^/.?]+)", path)
    return found.group(1) if found else None


def ticket_hash(path, query, backends):
    return random.choice(list(backends))
