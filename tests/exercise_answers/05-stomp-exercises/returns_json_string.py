# cell: stomp_mapping
# expect: wrong
# question: stomp_mapping_tests
# concept: encodes the answer as JSON itself, so the broker encodes that string a second time
class SumController:
    @message_mapping("/sum")
    @send_to("/topic/sums")
    def add(self, message):
        return json.dumps({"sum": sum(message["numbers"]), "count": len(message["numbers"])})
