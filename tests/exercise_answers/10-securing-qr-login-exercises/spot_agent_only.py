# cell: q3_spot
# expect: wrong
# question: q3_spot_tests
# concept: compares the agent only: the same browser on another machine looks like the user
def suspicious(records, my_address, my_agent):
    return [r["ticket"] for r in records if r["browser_agent"] != my_agent]
