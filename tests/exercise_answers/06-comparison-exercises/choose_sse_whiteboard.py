# cell: technique_choice
# expect: wrong
# question: choice_whiteboard_tests, choice_ticker_tests
# concept: SSE for a whiteboard whose users talk back 30 times a second, and WebSocket through proxies without Upgrade
CHOICES = {"ticker": "ws", "whiteboard": "sse", "report": "poll"}
