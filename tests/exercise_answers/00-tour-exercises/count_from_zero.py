# cell: tour_hello_server
# expect: wrong
# question: tour_hello_server_tests
# concept: the counter is increased after the answer is written, so the first request says count 0
class HelloHandler(BaseHandler):
    def get(self):
        self.write_json({"hello": "world", "server": self.application.name, "count": self.application.hello_count})
        self.application.hello_count += 1


def make_hello_app(name):
    app = ServerApp([(r"/hello", HelloHandler)], name=name)
    app.hello_count = 0
    return app
