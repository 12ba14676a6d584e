# cell: technique_choice
# expect: wrong
# question: choice_ticker_tests, choice_report_tests
# concept: "the best case for WebSocket" everywhere: ignores proxies without Upgrade and the balancer with no fix
CHOICES = {"ticker": "ws", "whiteboard": "ws", "report": "ws"}
