# cell: stomp_mapping
# expect: right
# concept: a handler that also takes the frame (the two-parameter form) and counts with a loop
class SumController:
    @message_mapping("/sum")
    @send_to("/topic/sums")
    def total(self, body, frame):
        total, count = 0, 0
        for number in body.get("numbers", []):
            total += number
            count += 1
        return {"sum": total, "count": count}
