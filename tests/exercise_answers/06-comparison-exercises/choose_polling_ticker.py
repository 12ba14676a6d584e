# cell: technique_choice
# expect: wrong
# question: choice_ticker_tests
# concept: short polling for a 50 events/s ticker with a 20 ms median: a poll every 40 ms per reader
CHOICES = {"ticker": "poll", "whiteboard": "ws", "report": "poll"}
