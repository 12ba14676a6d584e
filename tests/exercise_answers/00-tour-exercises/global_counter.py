# cell: tour_hello_server
# expect: wrong
# question: tour_hello_state_tests
# concept: the counter is a module global, shared by every server in the kernel (reset whenever an app is made)
hello_count = 0


class HelloHandler(BaseHandler):
    def get(self):
        global hello_count
        hello_count += 1
        self.write_json({"hello": "world", "server": self.application.name, "count": hello_count})


def make_hello_app(name):
    global hello_count
    hello_count = 0
    return ServerApp([(r"/hello", HelloHandler)], name=name)
