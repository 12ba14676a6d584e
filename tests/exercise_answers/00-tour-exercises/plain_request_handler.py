# cell: tour_hello_server
# expect: wrong
# question: tour_hello_server_tests
# concept: a plain tornado RequestHandler instead of BaseHandler, so no X-Served-By header names the server
import tornado.web


class HelloHandler(tornado.web.RequestHandler):
    def get(self):
        self.application.hello_count += 1
        self.write({"hello": "world", "server": self.application.name, "count": self.application.hello_count})


def make_hello_app(name):
    app = ServerApp([(r"/hello", HelloHandler)], name=name)
    app.hello_count = 0
    return app
