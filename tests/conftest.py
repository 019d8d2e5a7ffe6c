"""Shared pytest set-up for objstore's tests."""
import pytest

# The conformance mixins in objstore.testing assert with plain ``assert``;
# rewrite them like test modules so failures show the compared values.
pytest.register_assert_rewrite('objstore.testing')
