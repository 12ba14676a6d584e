# cell: pubsub_hub
# expect: wrong
# question: pubsub_hub_tests
# concept: trusts every message on the channel: junk raises in on_message
class MyPubSubHub(PubSubExerciseBase):
    def channel_of(self, ticket):
        return f"{self.app.namespace}:events:{ticket}"

    async def on_first_channel(self, ticket):
        await self.listen(self.channel_of(ticket))

    async def on_last_channel(self, ticket):
        await self.unlisten(self.channel_of(ticket))

    async def publish(self, ticket, event):
        await self.app.redis.publish(self.channel_of(ticket), json.dumps(event))

    def on_message(self, data):
        self.deliver_local(json.loads(data))
