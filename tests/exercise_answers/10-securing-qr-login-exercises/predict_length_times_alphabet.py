# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: takes an id's length times log2(its alphabet) as its entropy, fixed characters and padding included
PREDICTED_BITS = {
    "uuid4": 32 * 4,
    "prefixed_hex": 11 * math.log2(16),
    "six_digits": 6 * math.log2(10),
    "token_urlsafe_16": 22 * 6,
}
