# cell: qr_ip_hash
# expect: wrong
# question: qr_ip_hash_tests
# concept: "ip_hash never works": but when both addresses hash to one backend the login completes, by luck
def ip_hash_servers(browser_address, phone_address, backends):
    return {"browser": ip_hash(browser_address, list(backends)), "phone": ip_hash(phone_address, list(backends))}


def login_completes_under_ip_hash(browser_address, phone_address, backends):
    return False
