# cell: q1_predict
# expect: right
# concept: each prediction computed from what the generator draws, not typed in
PREDICTED_BITS = {
    "uuid4": 128 - 4 - 2,                 # RFC 4122: 4 version bits and 2 variant bits are fixed
    "prefixed_hex": 8 * 4,                # token_hex(4): 4 random bytes
    "six_digits": math.log2(10 ** 6),     # one of a million
    "token_urlsafe_16": 16 * 8,           # 16 random bytes
}
