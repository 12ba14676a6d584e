# cell: ws_accept_key
# expect: wrong
# question: ws_accept_key_tests
# concept: sends the SHA-1 digest as hex text instead of base64 of its 20 bytes
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return hashlib.sha1((key + WEBSOCKET_GUID).encode()).hexdigest()
