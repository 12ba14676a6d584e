# cell: pubsub_hub
# expect: right
# concept: its own channel names, compact JSON, and validation by catching what a bad message raises
class MyPubSubHub(PubSubExerciseBase):
    PREFIX = "backplane:ticket:"

    def channel_of(self, ticket):
        return self.PREFIX + ticket

    async def on_first_channel(self, ticket):
        await self.listen(self.channel_of(ticket))

    async def on_last_channel(self, ticket):
        if ticket not in self.channels:
            await self.unlisten(self.channel_of(ticket))

    async def publish(self, ticket, event):
        message = json.dumps(event, separators=(",", ":"))
        await self.app.redis.publish(self.channel_of(ticket), message)

    def on_message(self, data):
        try:
            event = json.loads(data)
            event["ticket"], event["state"], int(event["version"])
        except (ValueError, TypeError, KeyError):
            return
        self.deliver_local(event)
