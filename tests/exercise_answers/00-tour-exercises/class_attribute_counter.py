# cell: tour_hello_server
# expect: wrong
# question: tour_hello_state_tests
# concept: the counter is a class attribute of the handler, shared by every server that routes to it
class HelloHandler(BaseHandler):
    count = 0

    def get(self):
        HelloHandler.count += 1
        self.write_json({"hello": "world", "server": self.application.name, "count": HelloHandler.count})


def make_hello_app(name):
    HelloHandler.count = 0
    return ServerApp([(r"/hello", HelloHandler)], name=name)
