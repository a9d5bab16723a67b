"""Request-scoped factories: the one place that turns the current request into services."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import current_app, g, request
from sqlalchemy.orm import Session

from idp.accounts import AccountService
from idp.events import ACCOUNT, Actor, Application
from idp.media.store import ImageStore
from idp.models import User, UserSession
from idp.organizations.branding import BrandingService
from idp.organizations.invitations import InvitationService
from idp.organizations.service import OrganizationService
from idp.profile import ProfileService
from idp.provider.clients import ClientService
from idp.provider.codes import AuthorizationCodeStore
from idp.provider.keys import KeyService
from idp.provider.logout import end_session_tokens, end_user_tokens
from idp.provider.server import IdpAuthorizationServer, ProviderServices
from idp.provider.tokens import TokenService
from idp.runtime import request_db, request_reader, runtime
from idp.security.account_deletion import AccountDeletionService
from idp.security.alerts import AlertService
from idp.security.authentication import AuthenticationService, SignInCollaborators
from idp.security.device_trust import DeviceTrust
from idp.security.devices import DEVICE_COOKIE, ClientInfo
from idp.security.email_change import EmailChangeService
from idp.security.email_verification import EmailVerificationService, VerificationResender
from idp.security.lockout import LockoutService
from idp.security.mail_requests import MailRequestLimits
from idp.security.notifications import AccountNotifier
from idp.security.password_change import PasswordChangeService
from idp.security.password_reset import PasswordResetService, ResetCollaborators
from idp.security.ratelimit import RateLimiter
from idp.security.reauth import PasswordConfirmation
from idp.security.redirects import safe_next
from idp.security.session_list import SessionListService
from idp.security.sessions import ActiveSession, SessionService
from idp.security.two_factor import TwoFactorService, totp_box
from idp.settings import Settings
from idp.signup import SignupService
from idp.store import Store

if TYPE_CHECKING:
    from idp.federation.connections import ConnectionService
    from idp.federation.signin import SsoSignInService


def session_cookie_name() -> str:
    return "__Host-idp_session" if runtime().settings.secure_cookies else "idp_session"


def client_info() -> ClientInfo:
    return ClientInfo(
        ip=request.remote_addr or "",
        user_agent=request.headers.get("User-Agent", "")[:512],
        browser_key=request.cookies.get(DEVICE_COOKIE) or None,
    )


def client_actor() -> Actor:
    return Actor(
        ip=request.remote_addr or "", user_agent=request.headers.get("User-Agent", "")[:512]
    )


def account_service() -> AccountService:
    return AccountService(request_db(), runtime().passwords)


def session_service() -> SessionService:
    rt = runtime()
    return SessionService(
        request_db(),
        rt.store,
        rt.settings,
        on_end=end_session_tokens,
        on_end_user=end_user_tokens,
    )


def key_service_for(db: Session, settings: Settings) -> KeyService:
    return KeyService.from_settings(db, settings)


def provider_services() -> ProviderServices:
    """The provider's collaborators for this request (built once per request)."""
    if "provider_services" not in g:
        rt = runtime()
        db = request_db()
        keys = key_service_for(db, rt.settings)
        keys.reader = request_reader
        refresh_memory = rt.settings.refresh_token_days * 86400
        g.provider_services = ProviderServices(
            db=db,
            store=rt.store,
            clients=ClientService(db, reader=request_reader),
            tokens=TokenService(
                db,
                keys,
                rt.settings,
                reader=request_reader,
                one_statement_grants=rt.engine.dialect.name == "postgresql",
            ),
            codes=AuthorizationCodeStore(
                rt.store, rt.settings.authorization_code_seconds, refresh_memory
            ),
            keys=keys,
            issuer=rt.settings.issuer,
            id_token_seconds=rt.settings.id_token_minutes * 60,
            actor=client_actor(),
        )
    services: ProviderServices = g.provider_services
    return services


def authorization_server() -> IdpAuthorizationServer:
    server: IdpAuthorizationServer = current_app.extensions["idp_oauth"]
    return server


def runtime_store() -> Store:
    return runtime().store


def rate_limiter() -> RateLimiter:
    return RateLimiter(runtime().store)


def lockout_service() -> LockoutService:
    rt = runtime()
    return LockoutService(request_db(), rt.store, rt.settings)


def two_factor_service() -> TwoFactorService:
    rt = runtime()
    return TwoFactorService(
        request_db(),
        rt.passwords,
        totp_box(rt.settings),
        actor=client_actor(),
        confirmation=password_confirmation(),
    )


def notifier() -> AccountNotifier:
    return AccountNotifier(runtime().settings.issuer)


def authentication_service() -> AuthenticationService:
    rt = runtime()
    db = request_db()
    return AuthenticationService(
        db,
        account_service(),
        rt.passwords,
        session_service(),
        rt.store,
        rt.settings,
        SignInCollaborators(
            lockout=lockout_service(),
            limiter=rate_limiter(),
            trust=DeviceTrust(rt.settings.secret_key),
            observer=AlertService(db, rt.store, rt.settings),
            second_factor=two_factor_service(),
            mailer=notifier(),
            verification=VerificationResender(email_verification_service(), mail_request_limits()),
        ),
    )


def signing_in_to(target: str | None) -> Application:
    """What a sign-in continues to: the registered application whose authorization request
    ``target`` (the sign-in's ``next``) is, else the account itself (:data:`ACCOUNT`)."""
    path = safe_next(target, default="")
    clients = ClientService(request_db(), reader=request_reader)
    return (clients.application_of(path) if path else None) or ACCOUNT


def session_list_service() -> SessionListService:
    return SessionListService(
        request_db(), session_service(), account_service(), actor=client_actor()
    )


def password_change_service() -> PasswordChangeService:
    rt = runtime()
    return PasswordChangeService(
        request_db(),
        rt.passwords,
        session_list_service(),
        rate_limiter(),
        rt.store,
        account_service(),
        actor=client_actor(),
    )


def mail_request_limits() -> MailRequestLimits:
    rt = runtime()
    return MailRequestLimits(rate_limiter(), rt.store, rt.settings)


def email_verification_service() -> EmailVerificationService:
    return EmailVerificationService(
        request_db(), runtime().settings, account_service(), actor=client_actor()
    )


def password_reset_service() -> PasswordResetService:
    rt = runtime()
    return PasswordResetService(
        request_db(),
        account_service(),
        rt.passwords,
        rt.store,
        rt.settings,
        ResetCollaborators(
            lockout=lockout_service(),
            sessions=session_list_service(),
            second_factor=two_factor_service(),
            limiter=rate_limiter(),
            sso_enforced=lambda email: connection_service().enforces_sso(email),
        ),
        actor=client_actor(),
    )


def signup_service() -> SignupService:
    rt = runtime()
    return SignupService(request_db(), rt.passwords, actor=client_actor())


def signed_in_user() -> tuple[ActiveSession, User] | None:
    """The live session and its user, or None when nobody is signed in."""
    active = current_session()
    if active is None:
        return None
    user = request_db().get(User, active.user_id)
    return (active, user) if user is not None else None


def current_session() -> ActiveSession | None:
    """The browser's live session, resolved once per request."""
    if "idp_session" not in g:
        g.idp_session = session_service().resolve(request.cookies.get(session_cookie_name()))
    active: ActiveSession | None = g.idp_session
    return active


def timed_out_session() -> UserSession | None:
    """The browser's session when it has timed out (no live session): what a sign-out from
    this browser still ends (see :meth:`SessionService.timed_out`)."""
    return session_service().timed_out(request.cookies.get(session_cookie_name()))


def connection_service() -> ConnectionService:
    """SSO connections (linking, testing) for this request."""
    from idp.federation.connections import ConnectionService, secret_box
    from idp.federation.entra import EntraDirectory

    rt = runtime()
    return ConnectionService(
        request_db(), EntraDirectory.from_settings(rt.settings), secret_box(rt.settings.secret_key)
    )


def sso_service() -> SsoSignInService:
    """Enterprise SSO sign-in for this request."""
    from idp.federation.entra import EntraDirectory
    from idp.federation.metadata import TenantMetadata
    from idp.federation.signin import SsoSignInService
    from idp.federation.tokens import IdTokenValidator

    rt = runtime()
    db = request_db()
    directory = EntraDirectory.from_settings(rt.settings)
    metadata = TenantMetadata(rt.store, directory)
    return SsoSignInService(
        db,
        rt.store,
        connection_service(),
        metadata,
        IdTokenValidator(metadata, directory),
        account_service(),
        redirect_uri=f"{rt.settings.issuer.rstrip('/')}/login/sso/callback",
        session_seconds=rt.settings.session_absolute_minutes * 60,
    )


def password_confirmation() -> PasswordConfirmation:
    rt = runtime()
    active = current_session()

    def fresh_sign_in_at() -> float | None:
        return sso_service().fresh_sign_in_at(active.session_id) if active else None

    return PasswordConfirmation(rt.passwords, rate_limiter(), rt.store, fresh_sign_in_at)


def organization_service() -> OrganizationService:
    return OrganizationService(
        request_db(), account_service(), password_confirmation(), actor=client_actor()
    )


def invitation_service() -> InvitationService:
    rt = runtime()
    return InvitationService(
        request_db(),
        organization_service(),
        account_service(),
        rt.passwords,
        rate_limiter(),
        rt.store,
        issuer=rt.settings.issuer,
        valid_days=rt.settings.invitation_days,
        actor=client_actor(),
    )


def branding_service() -> BrandingService:
    return BrandingService(
        request_db(), organization_service(), ImageStore(request_db()), actor=client_actor()
    )


def account_deletion_service() -> AccountDeletionService:
    db = request_db()
    return AccountDeletionService(
        db, password_confirmation(), session_service(), ImageStore(db), actor=client_actor()
    )


def profile_service() -> ProfileService:
    db = request_db()
    return ProfileService(db, ImageStore(db), actor=client_actor())


def email_change_service() -> EmailChangeService:
    rt = runtime()
    def sso_enforced(email: str) -> bool:
        return connection_service().enforces_sso(email)

    return EmailChangeService(
        request_db(),
        account_service(),
        password_confirmation(),
        mail_request_limits(),
        sso_enforced,
        issuer=rt.settings.issuer,
        valid_minutes=rt.settings.email_change_link_minutes,
        actor=client_actor(),
    )
