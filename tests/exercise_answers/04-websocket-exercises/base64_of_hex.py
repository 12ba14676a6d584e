# cell: ws_accept_key
# expect: wrong
# question: ws_accept_key_tests
# concept: base64-encodes the hex string of the digest instead of the 20 bytes of the digest
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).hexdigest().encode()).decode()
