# cell: tour_hello_server
# expect: right
# concept: an application subclass that owns its counter, a different way to keep state on the application
class HelloApp(ServerApp):
    def __init__(self, name):
        super().__init__([(r"/hello", HelloHandler)], name=name)
        self.answered = 0


class HelloHandler(BaseHandler):
    def get(self):
        app = self.application
        app.answered = app.answered + 1
        self.write_json({"hello": "world", "server": app.name, "count": app.answered})


def make_hello_app(name):
    return HelloApp(name)
