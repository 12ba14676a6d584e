# cell: registry_forward
# expect: wrong
# question: registry_stale_tests
# concept: a forward to a dead holder raises out of publish: the phone's confirm fails, and the others may never hear
class MyRegistryHub(RegistryHub):
    async def publish(self, ticket, event):
        self.stats["published"] += 1
        if ticket in self.channels:
            self.deliver_local(event)
        client = tornado.httpclient.AsyncHTTPClient()
        for url in await self.app.redis.smembers(self.key_of(ticket)):
            if url != self.internal_url:
                await client.fetch(url + "/internal/deliver", method="POST", body=json.dumps(event),
                                   headers={"Content-Type": "application/json", SECRET_HEADER: self.secret},
                                   request_timeout=2)
