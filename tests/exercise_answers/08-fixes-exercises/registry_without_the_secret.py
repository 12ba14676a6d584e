# cell: registry_forward
# expect: wrong
# question: registry_forward_tests
# concept: forwards without the servers' shared secret: the holder answers 401 and delivers nothing
class MyRegistryHub(RegistryHub):
    async def publish(self, ticket, event):
        self.stats["published"] += 1
        if ticket in self.channels:
            self.deliver_local(event)
        client = tornado.httpclient.AsyncHTTPClient()
        for url in await self.app.redis.smembers(self.key_of(ticket)):
            if url == self.internal_url:
                continue
            try:
                await client.fetch(url + "/internal/deliver", method="POST", body=json.dumps(event),
                                   headers={"Content-Type": "application/json"}, request_timeout=2)
            except Exception:
                self.stats["forward_failed"] += 1
