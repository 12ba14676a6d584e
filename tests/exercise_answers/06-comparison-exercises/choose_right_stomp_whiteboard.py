# cell: technique_choice
# expect: right
# concept: STOMP over WebSocket for the whiteboard (duplex too, with topics), built by hand
CHOICES = dict(ticker="sse", report="poll")
CHOICES["whiteboard"] = "stomp"
