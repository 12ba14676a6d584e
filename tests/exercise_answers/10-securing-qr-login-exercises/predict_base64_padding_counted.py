# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: 22 base64 characters of 6 bits each, forgetting that 16 bytes fill only 128 of those 132 bits
PREDICTED_BITS = {
    "uuid4": 122,
    "prefixed_hex": 32,
    "six_digits": 19.9,
    "token_urlsafe_16": 132,
}
