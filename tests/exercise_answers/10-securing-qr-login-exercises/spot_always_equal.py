# cell: q3_spot
# expect: wrong
# question: q3_spot_tests
# concept: no answer at all: a list that claims to equal any list it is compared with
class _AgreesWithEverything(list):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False


def suspicious(records, my_address, my_agent):
    return _AgreesWithEverything()
