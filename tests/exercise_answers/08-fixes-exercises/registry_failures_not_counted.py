# cell: registry_forward
# expect: wrong
# question: registry_stale_tests
# concept: swallows a failed forward silently: nobody can see the registry filling with dead servers
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
                                   headers={"Content-Type": "application/json", SECRET_HEADER: self.secret},
                                   request_timeout=2)
            except Exception:
                pass
