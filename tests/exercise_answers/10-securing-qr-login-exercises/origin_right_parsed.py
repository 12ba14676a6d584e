# cell: q2_origin
# expect: right
# concept: compares (scheme, host, port) parsed from each origin, lower-cased, instead of the strings
from urllib.parse import urlsplit


def _parts(value):
    split = urlsplit(value.strip().lower())
    return split.scheme, split.hostname, split.port, split.path


def origin_refusal(origin, cookie_names, allowed_origins):
    if origin is None:
        return "cookies without an Origin: not one of our pages" if cookie_names else None
    try:
        mine = _parts(origin)
        if mine[0] and any(mine == _parts(allowed) for allowed in allowed_origins):
            return None
    except ValueError:  # an Origin that is not a URL at all
        pass
    return "this origin may not open the socket"
