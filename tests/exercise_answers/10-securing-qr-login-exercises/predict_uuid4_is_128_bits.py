# cell: q1_predict
# expect: wrong
# question: q1_predict_tests
# concept: a uuid4 is 128 bits long, so it must carry 128 random bits (its version and variant are fixed)
PREDICTED_BITS = {
    "uuid4": 128,
    "prefixed_hex": 32,
    "six_digits": 19.93,
    "token_urlsafe_16": 128,
}
