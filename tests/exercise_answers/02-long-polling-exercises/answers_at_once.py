# cell: lp_handler
# expect: wrong
# question: lp_handler_tests
# concept: answers at once even when there is nothing new: a short poll, not a long poll
class CursorLongPollHandler(BaseHandler):
    waiter = None

    async def get(self):
        after = self.int_argument("after", default=0, minimum=0)
        self.float_argument("timeout", default=30.0)
        self.write_json({"events": self.application.since(after)})

    def on_connection_close(self):
        pass
