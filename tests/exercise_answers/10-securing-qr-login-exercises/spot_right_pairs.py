# cell: q3_spot
# expect: right
# concept: compares the (address, agent) pair as one value
def suspicious(records, my_address, my_agent):
    me = (my_address, my_agent)
    flagged = []
    for record in records:
        if (record["browser_address"], record["browser_agent"]) != me:
            flagged.append(record["ticket"])
    return flagged
