# cell: q2_origin
# expect: wrong
# question: q2_origin_tests
# concept: an allowed origin as a prefix: http://site:8888.evil.example starts with http://site:8888
def origin_refusal(origin, cookie_names, allowed_origins):
    if origin is None:
        return "missing Origin with cookies" if cookie_names else None
    if any(origin.lower().startswith(allowed.lower()) for allowed in allowed_origins):
        return None
    return f"Origin {origin} is not allowed"
