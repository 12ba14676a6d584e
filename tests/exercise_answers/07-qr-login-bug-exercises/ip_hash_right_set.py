# cell: qr_ip_hash
# expect: right
# concept: each client hashed on its own; the login completes when the set of their servers has one member
def ip_hash_servers(browser_address, phone_address, backends):
    names = list(backends)
    return dict(zip(("browser", "phone"), (ip_hash(a, names) for a in (browser_address, phone_address))))


def login_completes_under_ip_hash(browser_address, phone_address, backends):
    return len(set(ip_hash_servers(browser_address, phone_address, backends).values())) == 1
