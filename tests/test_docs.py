"""Docs are tests: every ``>>>`` in README.rst and docs/*.rst runs here."""
import doctest
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / 'README.rst'] + sorted((ROOT / 'docs').glob('**/*.rst'))


def _with_examples(paths):
    return [p for p in paths if '>>>' in p.read_text(encoding='utf-8')]


def test_docs_have_examples():
    # The README's own example must keep running; a docs tree without any
    # example would mean this module silently tests nothing.
    assert ROOT / 'README.rst' in _with_examples(DOCS)


@pytest.mark.parametrize('path', _with_examples(DOCS),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_examples_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(
        str(path), module_relative=False, encoding='utf-8',
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        globs={'tmp_path': tmp_path})
    assert result.attempted > 0
    assert result.failed == 0, '%d of %d examples failed in %s' % (
        result.failed, result.attempted, path.name)
