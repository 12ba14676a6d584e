# cell: q2_origin
# expect: wrong
# question: q2_origin_tests
# concept: an allowed origin anywhere in the value ("in"), which any attacker's host name can contain
def origin_refusal(origin, cookie_names, allowed_origins):
    if origin is None:
        return "missing Origin with cookies" if cookie_names else None
    for allowed in allowed_origins:
        if allowed.lower() in origin.lower():
            return None
    return "origin not allowed"
