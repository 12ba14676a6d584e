# cell: q2_origin
# expect: wrong
# question: q2_missing_origin_tests
# concept: refuses every handshake without Origin, also a script's with nothing to steal
def origin_refusal(origin, cookie_names, allowed_origins):
    if origin is None:
        return "missing Origin"
    if origin.lower() in {a.lower() for a in allowed_origins}:
        return None
    return f"Origin {origin} is not allowed"
