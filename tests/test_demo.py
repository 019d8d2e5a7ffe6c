"""``python -m objstore demo``: the README's main job, run as users run it."""
import os
import re
import shutil
import subprocess
import sys

import pytest

import objstore


def _demo(*args):
    return subprocess.run([sys.executable, '-m', 'objstore', 'demo', *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    path = tmp_path_factory.mktemp('demo') / 'library.fs'
    result = _demo(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''
    return path, result.stdout


def _section(output, title):
    """The indented lines under the line that starts with ``title``."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    section = []
    for line in lines[start + 1:]:
        if not line.startswith('  '):
            break
        section.append(line.strip())
    return section


def test_demo_names_its_file_first(demo_run):
    path, output = demo_run
    assert output.splitlines()[0] == 'objstore demo: %s' % path


def test_demo_shows_the_current_state_after_reopening(demo_run):
    _path, output = demo_run
    assert _section(output, 'The library now:') == [
        'Riverside library: 3 books',
        'dune    Dune, Frank Herbert (1965)',
        'hobbit  The Hobbit, J. R. R. Tolkien (1937)',
        'sicp    Structure and Interpretation of Computer Programs, '
        'Abelson and Sussman (1985)',
    ]


def test_demo_lists_the_transactions_with_their_metadata(demo_run):
    _path, output = demo_run
    rows = _section(output, 'Transactions')
    pattern = re.compile(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC  '
                         r'(\S+)\s+(.+?)\s+(\d+) object\(s\)$')
    parsed = [pattern.match(row).groups() for row in rows]
    assert [(user, note) for _when, user, note, _n in parsed] == [
        ('-', 'initial database creation'),
        ('alice', 'Open the library'),
        ('bob', 'Lend Dune to carol'),
        ('alice', 'Dune returned; add SICP'),
    ]
    # Lending a book writes that book alone.
    assert parsed[2][3] == '1'
    times = [when for when, _u, _n, _c in parsed]
    assert times == sorted(times)


def test_demo_shows_a_past_state(demo_run):
    _path, output = demo_run
    assert _section(output, 'The library as it was after "Lend Dune to carol"') == [
        'Riverside library: 2 books',
        'dune    Dune, Frank Herbert (1965) -- lent to carol',
        'hobbit  The Hobbit, J. R. R. Tolkien (1937)',
    ]


def test_demo_file_holds_what_it_showed(demo_run):
    path, _output = demo_run
    with objstore.connection('file://%s?read_only=true' % path) as conn:
        books = conn.root()['books']
        assert list(books) == ['dune', 'hobbit', 'sicp']
        assert books['dune'].lent_to is None
        assert type(books['dune']).__module__ == 'objstore.demo'


def test_demo_without_a_path_uses_a_temporary_file():
    result = _demo()
    assert result.returncode == 0, result.stderr
    path = result.stdout.splitlines()[0].split(': ', 1)[1]
    assert os.path.basename(path) == 'library.fs'
    assert os.path.exists(path)
    shutil.rmtree(os.path.dirname(path))


def test_demo_refuses_an_existing_file(tmp_path):
    path = tmp_path / 'mine.fs'
    path.write_bytes(b'precious')
    result = _demo(str(path))
    assert result.returncode == 2
    assert 'exists' in result.stderr and str(path) in result.stderr
    assert path.read_bytes() == b'precious'


def test_run_refuses_an_existing_file_too(tmp_path):
    from objstore import demo
    path = tmp_path / 'mine.fs'
    path.write_bytes(b'precious')
    with pytest.raises(FileExistsError):
        demo.run(str(path), out=lambda line: None)
    assert path.read_bytes() == b'precious'
