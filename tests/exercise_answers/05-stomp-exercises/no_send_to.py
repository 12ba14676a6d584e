# cell: stomp_mapping
# expect: wrong
# question: stomp_mapping_tests
# concept: leaves out @send_to, so the answer goes to the default topic /topic/sum, where nobody listens
class SumController:
    @message_mapping("/sum")
    def add(self, message):
        return {"sum": sum(message["numbers"]), "count": len(message["numbers"])}
