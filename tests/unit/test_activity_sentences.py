"""Every event in the activity log reads as a plain sentence and belongs to a type of action."""

from __future__ import annotations

import pytest

from idp.activity.sentences import (
    CATALOG,
    GENERIC,
    ActionGroup,
    Perspective,
    group_of,
    sentence,
    tags_in,
)
from idp.events import EventTag


@pytest.mark.parametrize("tag", list(EventTag), ids=str)
def test_every_event_tag_has_its_own_sentence(tag: EventTag) -> None:
    assert tag in CATALOG, f"add {tag.name} to idp/activity/sentences.py CATALOG"
    mine = sentence(tag, {})
    theirs = sentence(tag, {}, Perspective.ADMIN, who="Bob Builder")
    assert mine != sentence("no:such:tag", {})
    assert mine[0].isupper() and not mine.endswith(".")
    assert "{who}" not in theirs and theirs[0].isupper()
    assert group_of(tag) is CATALOG[tag].group


def test_sentences_are_distinct_so_a_reader_can_tell_events_apart() -> None:
    texts = [entry.wording.self_ for entry in CATALOG.values()]
    assert len(texts) == len(set(texts))


def test_the_examples_of_the_issue_read_as_written() -> None:
    assert sentence(EventTag.LOGIN_SUCCESS, {}) == "You signed in"
    assert (
        sentence(EventTag.LOGIN_FAILURE, {"reason": "bad_password"})
        == "Someone tried to sign in with a wrong password"
    )
    assert (
        sentence(EventTag.ACCOUNT_LOCKED, {})
        == "Your account was locked after too many failed attempts"
    )


def test_a_failed_sign_in_on_a_locked_account_does_not_claim_a_wrong_password() -> None:
    text = sentence(EventTag.LOGIN_FAILURE, {"reason": "locked"})
    assert "wrong password" not in text and "locked" in text


def test_admins_read_the_members_name() -> None:
    assert sentence(EventTag.LOGIN_SUCCESS, {}, Perspective.ADMIN, "Bob") == "Bob signed in"
    assert sentence(EventTag.PASSWORD_CHANGED, {}, Perspective.ADMIN, "Bob") == (
        "Bob changed their password"
    )


def test_an_unknown_tag_gets_a_generic_sentence_and_no_group() -> None:
    assert sentence("billing:invoice:paid", {}) == GENERIC.wording.self_
    assert group_of("billing:invoice:paid") is None
    assert group_of("account:session:revoke_all") is ActionGroup.SESSIONS  # future tags


def test_every_tag_is_in_exactly_one_group_and_every_group_has_tags() -> None:
    seen: list[str] = []
    for group in ActionGroup:
        assert tags_in(group), group
        seen += tags_in(group)
    assert sorted(seen) == sorted(str(t) for t in EventTag)
    assert set(tags_in(ActionGroup.SIGN_INS)) >= {
        EventTag.LOGIN_SUCCESS,
        EventTag.LOGIN_FAILURE,
        EventTag.SECOND_FACTOR_FAILURE,
    }
    assert set(tags_in(ActionGroup.LOCKOUTS)) == {
        EventTag.ACCOUNT_LOCKED,
        EventTag.ACCOUNT_UNLOCKED,
    }
