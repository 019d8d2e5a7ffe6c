"""RevisionedContainer against a model: a plain list of revisions per name.

Random sequences of assignments, updates, deletions and rollbacks; after
each, the mapping, the view with deleted items, and every combination of
history filters and batches must answer as the list filtered in Python.
"""
import datetime
import itertools

from hypothesis import given, settings, strategies as st

import objstore as im
from objstore.container import RevisionedContainer
from objstore.interfaces import (
    IM_STATE_DELETED, IM_STATE_LOCKED, IM_STATE_RETIRED)

NAMES = ('a', 'b', 'c')
CREATORS = (None, 'ann', 'bob')
COMMENTS = (None, 'fix', 'fix typo', 'style', '')
TICK = datetime.timedelta(microseconds=1)


class Doc(im.RevisionedImmutable):

    def __init__(self, body=None):
        self.body = body


def make(body, creator, comment):
    with im.create(Doc, creator=creator, comment=comment) as factory:
        return factory(body)


_op = st.one_of(
    st.tuples(st.just('assign'), st.sampled_from(NAMES),
              st.sampled_from(CREATORS), st.sampled_from(COMMENTS)),
    st.tuples(st.just('update'), st.sampled_from(NAMES),
              st.sampled_from(CREATORS), st.sampled_from(COMMENTS)),
    st.tuples(st.just('delete'), st.sampled_from(NAMES)),
    st.tuples(st.just('rollback'), st.sampled_from(NAMES),
              st.integers(0, 40), st.booleans()),
)

# A bound: None, or (index into the history, offset in microseconds).
_bound = st.one_of(st.none(), st.tuples(st.integers(0, 40),
                                        st.sampled_from([-1, 0, 1])))
_batch = st.tuples(st.integers(0, 6), st.one_of(st.none(),
                                                 st.integers(0, 5)))


class Model:
    """The container as plain lists, and the state each revision in them
    should have."""

    def __init__(self):
        self.histories = {}
        self.states = {}

    def state(self, revision):
        return self.states[id(revision)]

    def shown(self, *states):
        return sorted(n for n, history in self.histories.items()
                      if self.state(history[-1]) in states)

    def add(self, name, new):
        history = self.histories.setdefault(name, [])
        if history and self.state(history[-1]) == IM_STATE_LOCKED:
            self.states[id(history[-1])] = IM_STATE_RETIRED
        history.append(new)
        self.states[id(new)] = IM_STATE_LOCKED

    def apply(self, container, op):
        kind, name = op[0], op[1]
        history = self.histories.get(name)
        live = bool(history) and self.state(history[-1]) == IM_STATE_LOCKED
        if kind == 'assign':
            new = make(len(history or ()), op[2], op[3])
            container[name] = new
            self.add(name, new)
        elif kind == 'update' and live:
            with im.update(history[-1], op[2], op[3]) as new:
                new.body = len(history)
            self.add(name, new)
        elif kind == 'delete' and live:
            del container[name]
            self.states[id(history[-1])] = IM_STATE_DELETED
        elif kind == 'rollback' and history:
            target = history[op[2] % len(history)]
            container.rollbackToRevision(target, activate=op[3])
            del history[history.index(target) + 1:]
            if op[3]:
                self.states[id(target)] = IM_STATE_LOCKED


def expected(history, creator, comment, after, before, start, size, rev):
    found = [r for r in history
             if (creator is None or r.__im_creator__ == creator)
             and (comment is None or (r.__im_comment__ is not None
                                      and comment in r.__im_comment__))
             and (after is None or r.__im_start_on__ > after)
             and (before is None or r.__im_start_on__ < before)]
    if rev:
        found.reverse()
    return found[start:None if size is None else start + size]


def moment(history, bound):
    if bound is None:
        return None
    index, offset = bound
    return history[index % len(history)].__im_start_on__ + offset * TICK


def check(container, model, bounds, batches):
    assert list(container) == model.shown(IM_STATE_LOCKED)
    assert len(container) == len(model.shown(IM_STATE_LOCKED))
    view = container.withDeletedItems()
    assert list(view) == model.shown(IM_STATE_LOCKED, IM_STATE_DELETED)
    assert len(view) == len(list(view))
    for name, history in model.histories.items():
        newest = history[-1]
        assert [r.__im_state__ for r in history] == [
            model.state(r) for r in history]
        assert [r.__im_version__ for r in history] == list(
            range(len(history)))
        assert container.getNumberOfRevisions(name) == len(history)
        current = newest if newest.__im_state__ == IM_STATE_LOCKED else None
        assert container.getCurrentRevision(name) is current
        if newest.__im_state__ in (IM_STATE_LOCKED, IM_STATE_DELETED):
            assert view[name] is newest
        starts = [r.__im_start_on__ for r in history]
        assert starts == sorted(set(starts))
        for revision in history:
            assert container.getRevision(
                name, revision.__im_version__) is revision
        after, before = (moment(history, b) for b in bounds)
        for creator, comment, lower, upper, rev, (start, size) in \
                itertools.product(CREATORS + ('nobody',), COMMENTS,
                                  (None, after), (None, before),
                                  (False, True), batches):
            got = list(container.getRevisionHistory(
                name, creator=creator, comment=comment, startAfter=lower,
                startBefore=upper, batchStart=start, batchSize=size,
                reversed=rev))
            assert got == expected(history, creator, comment, lower, upper,
                                   start, size, rev), (
                name, creator, comment, lower, upper, rev, start, size)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(_op, max_size=30), bounds=st.tuples(_bound, _bound),
       batches=st.lists(_batch, min_size=1, max_size=3))
def test_container_matches_a_list_per_name(ops, bounds, batches):
    container = RevisionedContainer()
    model = Model()
    for op in ops:
        model.apply(container, op)
        check(container, model, bounds, [(0, None)])
    check(container, model, bounds, batches)
