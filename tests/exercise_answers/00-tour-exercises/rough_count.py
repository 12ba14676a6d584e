# cell: tour_prediction
# expect: right
# concept: a rougher count of both sides (about 6 request lines and 8 response lines of 25 B each) is within the tolerance
PREDICTED_HEADER_BYTES = 6 * 25 + 8 * 25
