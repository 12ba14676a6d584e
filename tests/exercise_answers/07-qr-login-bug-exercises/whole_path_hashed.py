# cell: qr_ticket_hash
# expect: wrong
# question: qr_ticket_hash_tests, qr_ticket_hash_cluster_tests
# concept: hashes the whole path, so the channel (/events) and the confirm (/confirm) of one ticket part
def ticket_of(path, query):
    return path


def _h(text):
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def ticket_hash(path, query, backends):
    points = sorted((_h(f"{name}#{i}"), name) for name in backends for i in range(100))
    hashes = [h for h, _ in points]
    return points[bisect.bisect_left(hashes, _h(path + "?" + query)) % len(points)][1]
