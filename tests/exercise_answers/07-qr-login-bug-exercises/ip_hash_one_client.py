# cell: qr_ip_hash
# expect: wrong
# question: qr_ip_hash_tests
# concept: treats the phone as the browser's client (its address), as if one device did the whole login
def ip_hash_servers(browser_address, phone_address, backends):
    where = ip_hash(browser_address, list(backends))
    return {"browser": where, "phone": where}


def login_completes_under_ip_hash(browser_address, phone_address, backends):
    where = ip_hash_servers(browser_address, phone_address, backends)
    return where["browser"] == where["phone"]
