# cell: registry_forward
# expect: wrong
# question: registry_forward_tests
# concept: posts to the gateway's /internal/publish, a route the app servers do not have
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
                await client.fetch(url + "/internal/publish", method="POST", body=json.dumps(event),
                                   headers={"Content-Type": "application/json", SECRET_HEADER: self.secret},
                                   request_timeout=2)
            except Exception:
                self.stats["forward_failed"] += 1
