"""Two picture changes at once leave no picture behind: the user's (or organization's) row is
locked before the previous picture is read and discarded, so the second change discards the
first one's picture. Before, both discarded the same old picture, and the loser's image stayed
in ``images``, served at ``/media/<id>.png`` and never deleted (not even with the account)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from idp.media.store import ImageStore
from idp.models import ImageKind, Organization, Role, StoredImage, User
from idp.organizations.branding import BrandingService
from idp.profile import ProfileService
from idp.runtime import Runtime
from tests.helpers import count, create_user, organization_service
from tests.images import picture
from tests.locks import waits_for
from tests.organizations import seed_org


def _race(
    runtime: Runtime,
    locked: type[User] | type[Organization],
    row_id: str,
    column: str,
    change: Callable[[Session], None],
) -> None:
    """Lock ``row_id`` in another transaction, run ``change`` in a thread, check that it waits,
    then make the concurrent upload (a new picture in ``column``) and let ``change`` go on."""
    holder = runtime.session_factory()
    previous = holder.scalar(
        select(getattr(locked, column)).where(locked.id == row_id).with_for_update()
    )

    def change_in_own_session() -> None:
        with runtime.session_factory() as db:
            change(db)

    def concurrent_upload() -> None:
        other = ImageStore(holder).save(picture(300, 300), ImageKind.AVATAR)
        ImageStore(holder).discard(previous)
        holder.execute(update(locked).where(locked.id == row_id).values({column: other.id}))

    waits_for(holder, change_in_own_session, concurrent_upload)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_uploads_of_a_profile_picture_at_once_leave_one_image(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        first = ImageStore(db).save(picture(300, 300), ImageKind.AVATAR)
        db.execute(update(User).where(User.id == user.id).values(avatar_id=first.id))
        db.commit()
    kept: list[str] = []

    def upload(db: Session) -> None:
        stored = db.get(User, user.id)  # read before the other upload commits
        assert stored is not None and stored.avatar_id == first.id
        kept.append(ProfileService(db, ImageStore(db)).set_picture(stored, picture(400, 400)))

    _race(runtime, User, user.id, "avatar_id", upload)
    with runtime.session_factory() as db:
        assert db.scalar(select(User.avatar_id).where(User.id == user.id)) == kept[0]
    assert count(runtime, StoredImage) == 1  # the first and the other upload's are gone


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_removing_a_picture_while_another_is_uploaded_leaves_none(runtime: Runtime) -> None:
    user = create_user(runtime)
    with runtime.session_factory() as db:
        first = ImageStore(db).save(picture(300, 300), ImageKind.AVATAR)
        db.execute(update(User).where(User.id == user.id).values(avatar_id=first.id))
        db.commit()

    def remove(db: Session) -> None:
        stored = db.get(User, user.id)
        assert stored is not None and stored.avatar_id == first.id
        ProfileService(db, ImageStore(db)).remove_picture(stored)

    _race(runtime, User, user.id, "avatar_id", remove)
    with runtime.session_factory() as db:
        assert db.scalar(select(User.avatar_id).where(User.id == user.id)) is None
    assert count(runtime, StoredImage) == 0


def _branding(runtime: Runtime, db: Session) -> BrandingService:
    organizations = organization_service(runtime, db)
    return BrandingService(db, organizations, ImageStore(db))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(("which", "column"), [("square", "square_logo_id"),
                                               ("wide", "wide_logo_id")])
def test_two_uploads_of_a_logo_at_once_leave_one_image(
    runtime: Runtime, which: str, column: str
) -> None:
    org = seed_org(runtime, "Acme", {"owner": ("owner@example.com", Role.OWNER)})

    def upload(db: Session) -> None:
        owner = db.get(User, org.users["owner"])
        assert owner is not None
        _branding(runtime, db).set_logo(owner, org.id, which, picture(600, 300))

    _race(runtime, Organization, org.id, column, upload)
    with runtime.session_factory() as db:
        kept = db.scalar(select(getattr(Organization, column)).where(Organization.id == org.id))
        assert kept is not None and db.get(StoredImage, kept) is not None
    assert count(runtime, StoredImage) == 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_removing_a_logo_while_another_is_uploaded_leaves_none(runtime: Runtime) -> None:
    org = seed_org(runtime, "Acme", {"owner": ("owner@example.com", Role.OWNER)})

    def remove(db: Session) -> None:
        owner = db.get(User, org.users["owner"])
        assert owner is not None
        _branding(runtime, db).remove_logo(owner, org.id, "square")

    _race(runtime, Organization, org.id, "square_logo_id", remove)
    with runtime.session_factory() as db:
        assert db.get(Organization, org.id).square_logo_id is None  # type: ignore[union-attr]
    assert count(runtime, StoredImage) == 0
