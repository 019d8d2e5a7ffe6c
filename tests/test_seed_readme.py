"""docs/immutables.rst against shoobx.immutable's README (the seed).

tests/test_docs.py runs the page; these tests check what running it cannot
show: that the page keeps every example of the seed, changed only in the
ways its notes explain, and that it passes with ``assert`` switched off.
"""
import doctest
import importlib.metadata
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGE = ROOT / 'docs' / 'immutables.rst'

# Each change below has a note on the page saying why.
SOURCE_CHANGES = [
    ('import shoobx.immutable as im', 'import objstore as im'),
    # getRevisionHistory() returns an iterator, in the seed too.
    ('len(revisions.getRevisionHistory())',
     'len(list(revisions.getRevisionHistory()))'),
]
OUTPUT_CHANGES = [
    # objstore.errors.ImmutableError is an AttributeError, same message.
    ('AttributeError: Cannot update locked immutable object.',
     'objstore.errors.ImmutableError: Cannot update locked immutable'
     ' object.'),
    ('AttributeError: update() is only available for master immutables.',
     'objstore.errors.ImmutableError: update() is only available for'
     ' master immutables.'),
    ('datetime.datetime(...)',
     'datetime.datetime(..., tzinfo=datetime.timezone.utc)'),
    ('<shoobx.immutable.revisioned.', '<objstore.revisioned.'),
]
# The seed builds these directly, which leaves them transient; the page
# makes them with create() (the examples that replace each one, in order).
MADE_WITH_CREATE = {
    'data = im.ImmutableSet({6})\n': [
        'with im.create(im.ImmutableSet) as factory:\n'
        '    data = factory({6})\n'],
    "answer = Answer('The Answer', 42, ['Arthur', 'Gag'])\n": [
        'with im.create(Answer) as factory:\n'
        "    answer = factory('The Answer', 42, ['Arthur', 'Gag'])\n"],
    "data['a'] = answer = Answer('Answer to the ultimate question')\n": [
        'with im.create(Answer) as factory:\n'
        "    answer = factory('Answer to the ultimate question')\n",
        "data['a'] = answer\n"],
}


def _examples(text, name):
    return doctest.DocTestParser().get_doctest(
        text, {}, name, name, 0).examples


def _seed_examples():
    try:
        description = importlib.metadata.metadata(
            'shoobx.immutable').get_payload()
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('shoobx.immutable (the bench extra) is not installed')
    # The README's examples: from "Using Immutables" up to the changelog.
    start = description.index('Using Immutables')
    end = description.index('\nCHANGES\n', start)
    return _examples(description[start:end], 'seed')


def _changed(text, changes):
    for seed, ours in changes:
        text = text.replace(seed, ours)
    return text


def test_page_keeps_every_seed_example_in_order():
    page = [(e.source, e.want)
            for e in _examples(PAGE.read_text(encoding='utf-8'), 'page')]
    seed = _seed_examples()
    assert len(seed) == 51
    expected = []
    for example in seed:
        if example.source in MADE_WITH_CREATE:
            expected += [(s, '') for s in MADE_WITH_CREATE[example.source]]
        else:
            expected.append((_changed(example.source, SOURCE_CHANGES),
                             _changed(example.want, OUTPUT_CHANGES)))
    position = 0
    for source, want in expected:
        try:
            position = page.index((source, want), position) + 1
        except ValueError:
            pytest.fail('the page lacks the seed example %r -> %r (or has '
                        'it out of order)' % (source, want))


def test_page_skips_no_example():
    skipped = [e.source for e in _examples(
        PAGE.read_text(encoding='utf-8'), 'page')
        if e.options.get(doctest.SKIP)]
    assert skipped == []


def test_page_passes_under_python_O(tmp_path):
    # Guards written as assert would vanish under -O and the examples that
    # expect an error would fail; run the whole page that way.
    script = (
        'import doctest, sys\n'
        'assert False, "-O must drop this"\n'
        'result = doctest.testfile(sys.argv[1], module_relative=False,'
        ' encoding="utf-8", optionflags=doctest.ELLIPSIS'
        ' | doctest.NORMALIZE_WHITESPACE)\n'
        'print(sys.flags.optimize, result.attempted, result.failed)\n')
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    done = subprocess.run(
        [sys.executable, '-O', '-c', script, str(PAGE)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    optimize, attempted, failed = map(int, done.stdout.split()[-3:])
    assert optimize == 1 and attempted > 0
    assert failed == 0, done.stdout
