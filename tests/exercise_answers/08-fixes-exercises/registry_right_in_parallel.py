# cell: registry_forward
# expect: right
# concept: forwards to every other holder at once (asyncio.gather) and counts the failures afterwards
import asyncio


class MyRegistryHub(RegistryHub):
    async def publish(self, ticket, event):
        self.stats["published"] += 1
        if ticket in self.channels:
            self.deliver_local(event)
        others = [url for url in await self.app.redis.smembers(self.key_of(ticket)) if url != self.internal_url]
        client = tornado.httpclient.AsyncHTTPClient()
        body = json.dumps(event)
        answers = await asyncio.gather(*(
            client.fetch(f"{url}/internal/deliver", method="POST", body=body, request_timeout=2, connect_timeout=1,
                         headers={SECRET_HEADER: self.secret, "Content-Type": "application/json"})
            for url in others), return_exceptions=True)
        self.stats["forward_failed"] += sum(isinstance(a, Exception) for a in answers)
