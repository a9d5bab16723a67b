"""The profile page: the name (pencil, then save), the profile picture (upload, refusals with
their reason, cache-busting URL, initials when none) and the claims relying services get."""

from __future__ import annotations

import io

from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from werkzeug.test import TestResponse

from idp.events import EventTag
from idp.models import StoredImage, User
from idp.runtime import Runtime
from tests.helpers import count, create_user, csrf_token, events
from tests.images import picture, png_with_bad_exif, png_with_bad_raw_exif_text
from tests.integration.test_account_access import FIREFOX_WINDOWS, Live, live_browser
from tests.oidc import RelyingParty, register_client
from tests.organizations import signed_in


def _upload(client: FlaskClient, data: bytes, name: str = "me.png") -> TestResponse:
    token = csrf_token(client.get("/account/profile").get_data(as_text=True))
    return client.post(
        "/account/profile/picture",
        data={"csrf_token": token, "picture": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def _user(runtime: Runtime) -> User:
    with runtime.session_factory() as db:
        user = db.query(User).one()
        db.expunge(user)
        return user


def test_the_pencil_opens_the_name_form_and_save_changes_the_name(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    overview = client.get("/account").get_data(as_text=True)
    assert 'aria-label="Edit your name"' in overview
    form = client.get("/account/profile?edit=1").get_data(as_text=True)
    assert 'autocomplete="given-name" value="Alice"' in form
    saved = client.post(
        "/account/profile/name",
        data={"csrf_token": csrf_token(form), "first_name": " Alicia ", "last_name": "Smith"},
    )
    assert saved.status_code == 303
    assert "Alicia Smith" in client.get("/account").get_data(as_text=True)
    [event] = events(runtime, EventTag.PROFILE_UPDATED)
    assert event.details == {"changed": ["first_name", "last_name"]}

    too_long = client.post(
        "/account/profile/name",
        data={"csrf_token": csrf_token(form), "first_name": "x" * 101, "last_name": ""},
    )
    assert too_long.status_code == 400
    assert "at most 100 characters" in too_long.get_data(as_text=True)


def test_a_name_with_characters_that_cannot_be_shown_is_refused_with_that_reason(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    form = client.get("/account/profile?edit=1").get_data(as_text=True)

    def save(first: str, last: str = "") -> TestResponse:
        return client.post("/account/profile/name", data={
            "csrf_token": csrf_token(form), "first_name": first, "last_name": last})

    for first, last, reason in [
        ("Al\x01ice", "", "The first name contains characters that cannot be shown."),
        ("Alice", "Lid\u202edell", "The last name contains characters that cannot be shown."),
        ("Al\u200bice", "", "The first name contains characters that cannot be shown."),
        ("\u200b", "", "The first name contains characters that cannot be shown."),
        (" \u3000 ", "\t", "Enter a first or a last name."),  # only whitespace: empty
    ]:
        refused = save(first, last)
        assert refused.status_code == 400, (first, last)
        assert reason in refused.get_data(as_text=True), (first, last)
    assert (_user(runtime).first_name, _user(runtime).last_name) == ("Alice", "Liddell")
    assert events(runtime, EventTag.PROFILE_UPDATED) == []
    assert save("Mehr\u200cnoosh", "  ").status_code == 303  # a joiner inside a word is kept
    assert _user(runtime).first_name == "Mehr\u200cnoosh"


def test_initials_are_shown_until_a_picture_is_uploaded(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    page = client.get("/account/profile").get_data(as_text=True)
    assert 'data-testid="avatar-initials"' in page and ">AL<" in page
    assert _upload(client, picture(640, 480)).status_code == 303
    page = client.get("/account/profile").get_data(as_text=True)
    assert 'data-testid="avatar-initials"' not in page
    user = _user(runtime)
    assert user.avatar_id and f"/media/{user.avatar_id}.png" in page
    served = client.get(f"/media/{user.avatar_id}.png")
    assert served.status_code == 200 and served.mimetype == "image/png"
    assert "immutable" in served.headers["Cache-Control"]
    assert "max-age=31536000" in served.headers["Cache-Control"]
    assert Image.open(io.BytesIO(served.data)).size == (256, 256)
    [event] = events(runtime, EventTag.PICTURE_CHANGED)
    assert event.user_id == user.id


def test_a_new_picture_gets_a_new_url_and_the_old_one_is_gone(
    app: Flask, runtime: Runtime
) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    _upload(client, picture(300, 300))
    first = _user(runtime).avatar_id
    _upload(client, picture(500, 300))
    second = _user(runtime).avatar_id
    assert first != second
    assert client.get(f"/media/{first}.png").status_code == 404
    assert count(runtime, StoredImage) == 1
    confirm = client.get("/account/profile/picture/remove")
    assert "Remove your picture?" in confirm.get_data(as_text=True)
    assert _user(runtime).avatar_id == second  # asking changes nothing
    token = csrf_token(confirm.get_data(as_text=True))
    removed = client.post("/account/profile/picture/remove", data={"csrf_token": token})
    assert removed.status_code == 303
    assert _user(runtime).avatar_id is None and count(runtime, StoredImage) == 0


def test_refused_uploads_say_why_and_change_nothing(app: Flask, runtime: Runtime) -> None:
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    small = _upload(client, picture(100, 100))
    assert small.status_code == 400
    assert "This picture is 100 x 100 pixels; it must be at least 210 x 210" in small.get_data(
        as_text=True
    )
    text = _upload(client, b"just some text", "notes.png")
    assert text.status_code == 400 and "not a picture" in text.get_data(as_text=True)
    big = _upload(client, b"\x89PNG" + b"\0" * (5 * 1024 * 1024 + 10))
    assert big.status_code == 400 and "larger than 5 MB" in big.get_data(as_text=True)
    assert count(runtime, StoredImage) == 0
    assert _user(runtime).avatar_id is None


def test_a_picture_with_broken_exif_is_kept_not_an_error(app: Flask, runtime: Runtime) -> None:
    """Pillow cannot parse such EXIF (it raised out of the upload: a 500); the pixels are kept."""
    create_user(runtime)
    client = signed_in(app, "alice@example.com")
    for data in (png_with_bad_exif(), png_with_bad_raw_exif_text()):
        assert _upload(client, data).status_code == 303
    avatar = _user(runtime).avatar_id
    served = client.get(f"/media/{avatar}.png")
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.data)).size == (256, 256)
    assert count(runtime, StoredImage) == 1


def test_the_claims_follow_the_profile(live: Live) -> None:
    base, rt = live
    create_user(rt)
    shop = RelyingParty(base, register_client(rt, "Shop"))
    browser = live_browser(base, FIREFOX_WINDOWS)
    tokens, _ = shop.sign_in(browser)
    before = shop.userinfo(tokens["access_token"]).json()
    assert before["name"] == "Alice Liddell" and "picture" not in before

    page = browser.http.get(base + "/account/profile", timeout=10).text
    browser.http.post(base + "/account/profile/name", timeout=10,
                      data={"csrf_token": csrf_token(page), "first_name": "Alicia",
                            "last_name": "Smith"})
    browser.http.post(base + "/account/profile/picture", timeout=10,
                      data={"csrf_token": csrf_token(page)},
                      files={"picture": ("me.png", picture(300, 300), "image/png")})
    after = shop.userinfo(tokens["access_token"]).json()
    assert (after["name"], after["given_name"], after["family_name"]) == (
        "Alicia Smith", "Alicia", "Smith")
    assert after["picture"].startswith(base + "/media/") and after["picture"].endswith(".png")
    import requests

    fetched = requests.get(after["picture"], timeout=10)
    assert fetched.status_code == 200 and fetched.headers["Content-Type"] == "image/png"
    # The ID token of a new sign-in carries it too.
    fresh, nonce = shop.sign_in(browser)
    claims = shop.validate_id_token(fresh["id_token"], nonce)
    assert claims["picture"] == after["picture"]


def test_changing_the_language_is_in_the_activity_log(app: Flask, runtime: Runtime) -> None:
    """It was saved without an event, unlike every other setting."""
    create_user(runtime)
    client = signed_in(app, "alice@example.com")

    def choose(locale: str) -> TestResponse:
        token = csrf_token(client.get("/account/profile").get_data(as_text=True))
        return client.post(
            "/account/profile/language", data={"csrf_token": token, "locale": locale}
        )

    assert choose("en").status_code == 303
    assert choose("en").status_code == 303  # unchanged: nothing recorded
    [event] = events(runtime, EventTag.LANGUAGE_CHANGED)
    assert (event.user_id, event.details) == (_user(runtime).id, {"locale": "en"})
    log = client.get("/account/activity?type=settings").get_data(as_text=True)
    assert "You changed your language" in log
    assert choose("xx").status_code == 400  # refused: nothing changes, nothing recorded
    assert choose("").status_code == 303  # the browser's language again
    assert [e.details for e in events(runtime, EventTag.LANGUAGE_CHANGED)] == [
        {"locale": "en"}, {"locale": ""}]
    assert _user(runtime).locale is None
