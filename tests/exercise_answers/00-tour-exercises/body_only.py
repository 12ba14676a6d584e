# cell: tour_prediction
# expect: wrong
# question: tour_prediction_tests
# concept: predicts the size of the JSON body, as if the headers were small next to it
PREDICTED_HEADER_BYTES = 45
