# cell: drain_predict
# expect: wrong
# question: drain_tests
# concept: no prediction at all: numbers that claim to equal whatever happened
class _AgreesWithEverything(int):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = int.__hash__


def predict_drain(fix, transport, logins, on_drained_server):
    return {"completed": _AgreesWithEverything(0), "lost_logins": _AgreesWithEverything(0)}
