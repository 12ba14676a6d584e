# cell: technique_choice
# expect: wrong
# question: choice_report_tests
# concept: the seed's "SSE is balancer-compatible": behind a balancer with no fix SSE fails like WebSocket
CHOICES = {"ticker": "sse", "whiteboard": "ws", "report": "sse"}
