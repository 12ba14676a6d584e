# cell: q3_spot
# expect: wrong
# question: q3_spot_tests
# concept: compares the address only: someone behind the same NAT looks like the user
def suspicious(records, my_address, my_agent):
    return [r["ticket"] for r in records if r["browser_address"] != my_address]
