# cell: lp_handler
# expect: wrong
# question: lp_handler_leak_tests
# concept: cancels the future but never removes it from app.waiters, so every closed or timed-out request leaves one
class CursorLongPollHandler(BaseHandler):
    waiter = None

    async def get(self):
        app = self.application
        after = self.int_argument("after", default=0, minimum=0)
        timeout = self.float_argument("timeout", default=30.0, minimum=0.0)
        if not app.since(after):
            self.waiter = app.wait_for_event()
            try:
                await asyncio.wait_for(self.waiter, timeout)
            except asyncio.TimeoutError:
                pass
            except asyncio.CancelledError:
                return
        self.write_json({"events": app.since(after)})

    def on_connection_close(self):
        if self.waiter is not None:
            self.waiter.cancel()
