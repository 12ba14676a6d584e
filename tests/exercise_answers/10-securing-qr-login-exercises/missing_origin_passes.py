# cell: q2_origin
# expect: wrong
# question: q2_missing_origin_tests
# concept: Tornado's default: checks an Origin when there is one, and lets a handshake without one through, cookie and all
def origin_refusal(origin, cookie_names, allowed_origins):
    if origin is None:
        return None
    if origin.lower() in {a.lower() for a in allowed_origins}:
        return None
    return f"Origin {origin} is not allowed"
