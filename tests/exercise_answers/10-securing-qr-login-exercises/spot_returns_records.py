# cell: q3_spot
# expect: wrong
# question: q3_spot_tests
# concept: returns the suspicious records themselves instead of their ticket ids
def suspicious(records, my_address, my_agent):
    return [r for r in records if r["browser_address"] != my_address or r["browser_agent"] != my_agent]
