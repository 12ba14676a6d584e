# cell: lp_handler
# expect: right
# concept: waits with asyncio.wait (no exception on timeout) and lets go of the future in one place
class CursorLongPollHandler(BaseHandler):
    waiter = None

    async def get(self):
        app = self.application
        after = self.int_argument("after", default=0, minimum=0)
        timeout = self.float_argument("timeout", default=30.0, minimum=0.0, maximum=600.0)
        if app.since(after):
            self.write_json({"events": app.since(after)})
            return
        self.waiter = app.wait_for_event()
        try:
            await asyncio.wait({self.waiter}, timeout=timeout)
        finally:
            app.waiters.discard(self.waiter)
        if self.waiter.cancelled():
            return
        self.write_json({"events": app.since(after)})

    def on_connection_close(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.cancel()
