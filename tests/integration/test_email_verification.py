"""The verification-link service the email change builds on (idp/security/email_verification):
a link bound to the user, the address and the purpose; single-use, expiring, superseded by a
newer one; ``confirm`` returns what it proved and, for an email change, changes nothing itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import EventTag
from idp.models import OutboxItem, User, utcnow
from idp.runtime import Runtime
from idp.security.email_verification import (
    EmailVerificationService,
    VerificationLinkError,
    VerificationPurpose,
    VerifiedAddress,
)
from tests.helpers import create_user, events

CHANGE = VerificationPurpose.EMAIL_CHANGE
ACCOUNT = VerificationPurpose.ACCOUNT


def _service(rt: Runtime, db: Session,
             clock: Callable[[], datetime] = utcnow) -> EmailVerificationService:
    return EmailVerificationService(db, rt.settings, AccountService(db, rt.passwords),
                                    clock=clock)


def test_an_email_change_link_is_mailed_to_the_new_address_and_changes_nothing_itself(
    runtime: Runtime,
) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        me = db.get(User, user.id)
        assert me is not None
        token = _service(runtime, db).start_email_verification(me, "alice@new.example", CHANGE)
        db.commit()
        (mail,) = db.scalars(select(OutboxItem.payload)).all()
        assert mail["to"] == "alice@new.example" and mail["template"] == "verify_email"
        assert mail["context"]["change"] is True
        assert mail["context"]["verify_url"].endswith("/account/email/verify/" + token)
    with runtime.session_factory() as db:
        with pytest.raises(VerificationLinkError):  # not an account-verification link
            _service(runtime, db).confirm(token, ACCOUNT)
        proved = _service(runtime, db).confirm(token, CHANGE)
        db.commit()
        assert proved == VerifiedAddress(user.id, "alice@new.example", CHANGE)
        unchanged = db.get(User, user.id)
        assert unchanged is not None and unchanged.email == "alice@example.com"
        with pytest.raises(VerificationLinkError, match="used"):
            _service(runtime, db).confirm(token, CHANGE)
    assert not events(runtime, EventTag.EMAIL_VERIFIED)  # the email change records its own


def test_a_newer_link_supersedes_the_older_one_of_the_same_purpose(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        me = db.get(User, user.id)
        assert me is not None
        service = _service(runtime, db)
        first = service.start_email_verification(me, "one@new.example", CHANGE)
        own = service.start_email_verification(me)  # another purpose: kept
        second = service.start_email_verification(me, "two@new.example", CHANGE)
        db.commit()
        with pytest.raises(VerificationLinkError, match="unknown"):
            service.find(first, CHANGE)
        assert service.find(second, CHANGE)[0].address == "two@new.example"
        assert service.find(own, ACCOUNT)[0].address == "alice@example.com"


def test_links_expire(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        me = db.get(User, user.id)
        assert me is not None
        token = _service(runtime, db).start_email_verification(me, "x@new.example", CHANGE)
        db.commit()
        later = _service(runtime, db, clock=lambda: utcnow() + timedelta(hours=24, seconds=1))
        with pytest.raises(VerificationLinkError, match="expired"):
            later.confirm(token, CHANGE)


def test_an_account_link_for_a_former_address_is_stale(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        me = db.get(User, user.id)
        assert me is not None
        token = _service(runtime, db).start_email_verification(me)
        me.email, me.email_normalized = "alice@new.example", "alice@new.example"
        db.commit()
        with pytest.raises(VerificationLinkError, match="stale"):
            _service(runtime, db).confirm(token)
