# cell: q2_origin
# expect: wrong
# question: q2_origin_tests
# concept: lets any origin through when no cookie came along ("nothing to steal"), against the rule
def origin_refusal(origin, cookie_names, allowed_origins):
    if not cookie_names:
        return None
    if origin is None:
        return "missing Origin with cookies"
    if origin.lower() not in [a.lower() for a in allowed_origins]:
        return "foreign Origin with cookies"
    return None
