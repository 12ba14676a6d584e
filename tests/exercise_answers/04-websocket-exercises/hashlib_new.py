# cell: ws_accept_key
# expect: right
# concept: the same arithmetic with hashlib.new and bytes concatenation
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    sha1 = hashlib.new("sha1")
    sha1.update(key.encode("ascii") + WEBSOCKET_GUID)
    return str(base64.standard_b64encode(sha1.digest()), "ascii")
