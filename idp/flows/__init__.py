"""Browser flows and operational endpoints, as blueprints."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask


def _timestamp_utc(value: float) -> str:
    """A moment as pages show it, in the page's language, in UTC (``26 nov. 2026 14:05 UTC``)."""
    from idp.i18n import localized_utc

    return localized_utc(datetime.fromtimestamp(value, UTC))


def _iso_utc(value: float | datetime) -> str:
    """A moment for ``<time datetime>``: an HTML global date and time string in UTC.

    HTML Living Standard 2.3.5.8 (``2026-11-26T14:05:00Z``); a Unix number is not one.
    """
    moment = value if isinstance(value, datetime) else datetime.fromtimestamp(value, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def register_flows(app: Flask) -> None:
    from idp.flows import (
        account,
        account_deletion,
        activity,
        admin,
        alerts,
        email_change,
        errors,
        language,
        login,
        media,
        ops,
        organizations,
        password,
        password_reset,
        profile,
        reauth,
        security,
        sessions,
        signup,
        sso,
        sso_admin,
        two_factor,
        unlock,
    )

    app.register_blueprint(login.bp)
    app.register_blueprint(sso.bp)
    app.register_blueprint(unlock.bp)
    app.register_blueprint(password_reset.bp)
    app.register_blueprint(signup.bp)
    app.register_blueprint(security.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(sso_admin.bp)
    app.register_blueprint(account.bp)
    app.register_blueprint(two_factor.bp)
    app.register_blueprint(alerts.bp)
    app.register_blueprint(activity.bp)
    app.register_blueprint(sessions.bp)
    app.register_blueprint(password.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(organizations.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(account_deletion.bp)
    app.register_blueprint(profile.bp)
    app.register_blueprint(email_change.bp)
    app.register_blueprint(language.bp)
    app.jinja_env.globals["current_organization"] = organizations.current_organization
    reauth.init_app(app)
    errors.init_app(app)
    app.add_template_filter(_timestamp_utc, "timestamp_utc")
    app.add_template_filter(_iso_utc, "iso_utc")
