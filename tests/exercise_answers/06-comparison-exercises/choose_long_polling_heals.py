# cell: technique_choice
# expect: wrong
# question: choice_report_tests, choice_whiteboard_tests
# concept: long polling "because it is plain HTTP": held by one server, and simplex
CHOICES = {"ticker": "sse", "whiteboard": "longpoll", "report": "longpoll"}
