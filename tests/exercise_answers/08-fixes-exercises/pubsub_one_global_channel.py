# cell: pubsub_hub
# expect: wrong
# question: pubsub_scope_tests
# concept: one Redis channel for every ticket: logins work, but every server reads every change
class MyPubSubHub(PubSubExerciseBase):
    def channel_of(self, ticket):
        return f"{self.app.namespace}:events"

    async def on_first_channel(self, ticket):
        await self.listen(self.channel_of(ticket))

    async def on_last_channel(self, ticket):
        if not self.channels:
            await self.unlisten(self.channel_of(ticket))

    async def publish(self, ticket, event):
        await self.app.redis.publish(self.channel_of(ticket), json.dumps(event))

    def on_message(self, data):
        try:
            event = json.loads(data)
        except ValueError:
            return
        if isinstance(event, dict) and {"ticket", "state", "version"} <= event.keys():
            self.deliver_local(event)
