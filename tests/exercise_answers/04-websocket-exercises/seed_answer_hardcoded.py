# cell: ws_accept_key
# expect: wrong
# question: ws_accept_key_tests
# concept: returns the seed notes' accept value whatever the key, as if it were a constant of the protocol
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key):
    return "1qVdfYHU9hPOl4JYYNXF623Gzn0="
