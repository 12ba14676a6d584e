# cell: tour_prediction
# expect: wrong
# question: tour_prediction_tests
# concept: counts only the response's headers and forgets that the request carries headers too
# status line 17 + Server 29 + Content-Type 47 + Date 37 + X-Served-By 21 + Etag 50 + Content-Length 20 + 2
PREDICTED_HEADER_BYTES = 223
