"""A process that dies keeps every committed pool change and none of the
transaction it died in (os._exit and SIGKILL, on each storage kind)."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from objstore.pool import PersistentDict, PersistentList, PersistentObject
from test_pool_support import make_pool  # noqa: F401 -- fixture

# The child opens the pool the test made, changes it as ``argv[3]`` says,
# reports each step on stdout, then dies as ``argv[4]`` says.
CHILD = textwrap.dedent('''
    import os, signal, sys, time
    sys.path.insert(0, {tests!r})
    from objstore.pool import PersistentList, PersistentObjectPool
    from test_pool_support import factory_for
    from test_pool_crash import Thing
    path, kind, scenario, death = sys.argv[1:5]
    pool = PersistentObjectPool(path, 'w', _storage_factory=factory_for(kind))
    root = pool.root

    def die():
        print('dying', flush=True)
        if death == 'exit':
            os._exit(3)
        time.sleep(60)          # the test sends SIGKILL

    if scenario == 'inside':
        with pool.transaction():
            root['list'].append('lost')
            root['list'][0] = 'lost'
            root['dict']['new'] = 'lost'
            del root['dict']['old']
            root['thing'].name = 'lost'
            root['thing'].extra = pool.new(PersistentList, ['lost'])
            oid = root['block']
            pool.mm.direct(oid)[:4] = b'lost'
            root['other_block'] = pool.mm.alloc(8)
            pool.root = 'lost root'
            die()
    elif scenario == 'after':
        root['list'].append('kept')
        with pool.transaction():
            root['dict']['new'] = 'kept'
            root['thing'].name = 'kept'
            pool.mm.direct(root['block'])[:4] = b'kept'
        print('committed', flush=True)
        die()
    elif scenario == 'loop':
        n = 0
        while True:
            n += 1
            if n % 2:
                root['list'].append(n)
            else:
                with pool.transaction():
                    root['list'].append(n)
                    root['list'].append(-n)
            print(n, flush=True)
''')


class Thing(PersistentObject):
    def __init__(self):
        self.name = 'original'


def _prepare(make_pool):
    pool = make_pool('x')
    with pool.transaction():
        root = pool.root = pool.new(PersistentDict)
        root['list'] = pool.new(PersistentList, ['original'])
        root['dict'] = pool.new(PersistentDict, old='original')
        root['thing'] = pool.new(Thing)
        oid = root['block'] = pool.mm.alloc(8, 5)
        pool.mm.direct(oid)[:4] = b'orig'
    pool.close()


def _start(make_pool, scenario, death):
    script = CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen(
        [sys.executable, '-c', script, str(make_pool.path), make_pool.kind,
         scenario, death], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _wait_for(child, word):
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.strip() == word:
            return lines
    raise AssertionError('child ended before %r: %s %s'
                         % (word, lines, child.stderr.read()))


def _kill(child, death):
    if death == 'kill':
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    child.stderr.close()


@pytest.mark.parametrize('death', ['exit', 'kill'])
def test_death_inside_a_transaction_leaves_nothing_of_it(make_pool, death):
    _prepare(make_pool)
    child = _start(make_pool, 'inside', death)
    _wait_for(child, 'dying')
    _kill(child, death)
    pool = make_pool('w')
    assert pool.recovered
    root = pool.root
    assert root['list'] == ['original']
    assert root['dict'] == {'old': 'original'}
    assert root['thing'].name == 'original'
    assert not hasattr(root['thing'], 'extra')
    assert bytes(pool.mm.direct(root['block'])[:4]) == b'orig'
    assert 'other_block' not in root
    _types, counts = pool.gc(debug=True)
    assert counts['objects-gced'] == 0


@pytest.mark.parametrize('death', ['exit', 'kill'])
def test_death_after_a_commit_keeps_it(make_pool, death):
    _prepare(make_pool)
    child = _start(make_pool, 'after', death)
    _wait_for(child, 'dying')
    _kill(child, death)
    pool = make_pool('w')
    assert pool.recovered
    root = pool.root
    assert root['list'] == ['original', 'kept']
    assert root['dict'] == {'old': 'original', 'new': 'kept'}
    assert root['thing'].name == 'kept'
    assert bytes(pool.mm.direct(root['block'])[:4]) == b'kept'


def test_sigkill_at_a_random_moment_keeps_changes_whole(make_pool):
    # Odd steps append n on their own, even steps append n and -n in one
    # transaction: after a kill the list is a prefix of that sequence with
    # no pair split, and holds at least every step the child reported.
    _prepare(make_pool)
    for delay in (0.05, 0.2, 0.4):
        child = _start(make_pool, 'loop', 'kill')
        reported = []
        for line in child.stdout:
            reported.append(int(line))
            if len(reported) >= 3:
                break
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
        pool = make_pool('w')
        assert pool.recovered
        items = list(pool.root['list'])[1:]
        pool.root['list'][1:] = []
        pool.close()
        expected = []
        n = 0
        while len(expected) < len(items):
            n += 1
            expected.extend([n] if n % 2 else [n, -n])
        assert items == expected
        assert n >= reported[-1]
