import pytest
from fixtures.token_vectors import VECTORS

from resmon.tokens import (
    bearer_from_header,
    canonical_repository,
    check_push_token,
    push_token,
    split_keys,
)


@pytest.mark.parametrize("key,org,repo,wf,job,expected", VECTORS)
def test_token_vectors(key, org, repo, wf, job, expected):
    assert push_token(key, org, repo, wf, job) == expected


def test_token_for_bare_name_verifies_a_push_with_full_name():
    bare = push_token("k", "my-org", "my-repo", "ci.yml", "build")
    full = push_token("k", "my-org", "my-org/my-repo", "ci.yml", "build")
    assert bare != full
    for token in (bare, full):
        for repo in ("my-repo", "my-org/my-repo"):
            assert check_push_token(token, ["k"], "my-org", repo, "ci.yml", "build")
    assert not check_push_token(bare, ["k"], "other-org", "my-org/my-repo", "ci.yml", "build")


def test_short_and_full_repository_are_one_scope():
    assert canonical_repository("my-org", "my-repo") == "my-org/my-repo"
    assert canonical_repository("my-org", "my-org/my-repo") == "my-org/my-repo"


def test_rotation_any_key_verifies():
    token = push_token("old", "o", "o/r", "w", "j")
    assert check_push_token(token, ["new", "old"], "o", "o/r", "w", "j")
    assert not check_push_token(token, ["new"], "o", "o/r", "w", "j")
    assert not check_push_token(token, ["old"], "o", "o/r", "w", "other")


def test_bearer_header():
    assert bearer_from_header("Bearer abc") == "abc"
    assert bearer_from_header("bearer  abc ") == "abc"
    assert bearer_from_header("Basic abc") is None
    assert bearer_from_header("Bearer ") is None
    assert bearer_from_header(None) is None


def test_split_keys_keeps_order_across_values_and_separators():
    assert split_keys("new, old") == ["new", "old"]
    assert split_keys("a,b", " c d\te ", ",,") == ["a", "b", "c", "d", "e"]
    assert split_keys() == [] and split_keys(" , ") == []
