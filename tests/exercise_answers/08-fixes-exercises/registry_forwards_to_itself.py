# cell: registry_forward
# expect: wrong
# question: registry_forward_tests
# concept: posts to every holder, itself included, instead of delivering locally
class MyRegistryHub(RegistryHub):
    async def publish(self, ticket, event):
        self.stats["published"] += 1
        client = tornado.httpclient.AsyncHTTPClient()
        for url in await self.app.redis.smembers(self.key_of(ticket)):
            try:
                await client.fetch(url + "/internal/deliver", method="POST", body=json.dumps(event),
                                   headers={"Content-Type": "application/json", SECRET_HEADER: self.secret},
                                   request_timeout=2)
            except Exception:
                self.stats["forward_failed"] += 1
