# cell: lp_handler
# expect: wrong
# question: lp_handler_leak_tests
# concept: does nothing when the client goes away, so its future waits in app.waiters until the timeout
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
            finally:
                app.waiters.discard(self.waiter)
        self.write_json({"events": app.since(after)})

    def on_connection_close(self):
        pass
