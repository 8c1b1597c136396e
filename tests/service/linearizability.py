"""A linearizability checker for histories of registers (Wing & Gong's search
with Lowe's memoization, as in Porcupine).

An operation is (invoke, complete, kind, args, result) on one register; the
registers are independent, so each one's history is checked on its own.
Kinds and what they require of the register's value v at their
linearization point:
  ("read", None, value)       v == value (None: absent)
  ("write", value, None)      sets v = value
  ("cas", (expected, new), True)   v == expected, sets v = new
  ("cas", (expected, new), False)  v != expected
An operation whose outcome is unknown (the call failed after the write may
have been proposed) has complete = inf: it may take effect at any point after
its invocation, or never. Its result is unknown too (result None for cas:
either outcome).
"""

import math


class Op:
    __slots__ = ("invoke", "complete", "kind", "args", "result", "index")

    def __init__(self, invoke, complete, kind, args, result):
        self.invoke = invoke
        self.complete = complete
        self.kind = kind
        self.args = args
        self.result = result
        self.index = -1


def _step(op, v):
    """(ok, new value) for op applied at value v."""
    if op.kind == "read":
        return op.result == v, v
    if op.kind == "write":
        return True, op.args
    expected, new = op.args
    if op.result is True:
        return (v == expected), new
    if op.result is False:
        return (v != expected), v
    # Unknown outcome: it took effect if the value matched, else it failed.
    return True, (new if v == expected else v)


def check_register(ops, initial=None, budget=2_000_000):
    """True if the operations on one register are linearizable; raises
    RuntimeError if the search passes `budget` steps."""
    for i, op in enumerate(ops):
        op.index = i
    # Events: calls and returns in time order (a call before a return at the
    # same instant). Unknown-outcome ops never return.
    events = []
    for op in ops:
        events.append((op.invoke, 0, op))
        if op.complete != math.inf:
            events.append((op.complete, 1, op))
    events.sort(key=lambda e: (e[0], e[1]))
    # A doubly linked list of events, so that linearized calls can be lifted
    # out and put back.
    n = len(events)
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt_head = [0 if n else None]
    ret_of = {}
    for i, (_, is_ret, op) in enumerate(events):
        if is_ret:
            ret_of[op.index] = i

    def head():
        return nxt_head[0] if nxt_head[0] is not None and nxt_head[0] < n else None

    def lift(i):
        p, q = prev[i], nxt[i]
        if p >= 0:
            nxt[p] = q
        else:
            nxt_head[0] = q
        if q < n:
            prev[q] = p

    def unlift(i):
        p, q = prev[i], nxt[i]
        if p >= 0:
            nxt[p] = i
        else:
            nxt_head[0] = i
        if q < n:
            prev[q] = i

    linearized = 0  # bitset of op indexes
    value = initial
    stack = []
    cache = set()
    steps = 0
    entry = head()
    while True:
        if entry is None:
            return True  # every return linearized
        steps += 1
        if steps > budget:
            raise RuntimeError("linearizability search passed its budget")
        _, is_ret, op = events[entry]
        if not is_ret:
            ok, new_value = _step(op, value)
            bits = linearized | (1 << op.index)
            if ok and (bits, new_value) not in cache:
                cache.add((bits, new_value))
                stack.append((entry, value))
                linearized = bits
                value = new_value
                lift(entry)
                if op.index in ret_of:
                    lift(ret_of[op.index])
                entry = head()
            else:
                entry = nxt[entry] if nxt[entry] < n else None
        else:
            # A return whose call is not linearized: undo the last choice.
            if not stack:
                return False
            entry, value = stack.pop()
            _, _, op = events[entry]
            linearized &= ~(1 << op.index)
            if op.index in ret_of:
                unlift(ret_of[op.index])
            unlift(entry)
            entry = nxt[entry] if nxt[entry] < n else None


def check(history, initial=None):
    """history: {register: [Op]}; returns the registers that fail."""
    return [k for k, ops in history.items() if not check_register(ops, initial)]
