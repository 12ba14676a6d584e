# cell: qr_ip_hash
# expect: wrong
# question: qr_ip_hash_tests
# concept: no answer at all: a dict that claims to equal any mapping, and a guess for the rest
class _AgreesWithEverything(dict):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


def ip_hash_servers(browser_address, phone_address, backends):
    return _AgreesWithEverything()


def login_completes_under_ip_hash(browser_address, phone_address, backends):
    return ip_hash(browser_address, list(backends)) == ip_hash(phone_address, list(backends))
