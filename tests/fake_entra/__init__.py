"""A faithful fake of Microsoft Entra ID (v2.0 endpoints) and Microsoft Graph for tests.

    with run_fake_entra() as fake:
        fake.add_tenant(TID, ["contoso.com"])
        fake.register_app(TID, CLIENT_ID, client_secret="s3cret",
                          redirect_uris=["https://idp.test/sso/callback"])
        fake.add_user(TID, OID, "ada@contoso.com", "ada@contoso.com", "Ada Lovelace",
                      email_verified_domain_owner=True)
        fake.next_login(TID, OID)
        for name, value in fake.env().items():
            monkeypatch.setenv(name, value)   # IDP_ENTRA_AUTHORITY, IDP_GRAPH_URL, CA bundle

See ``server.FakeEntra`` for the whole surface and ``test_fake_entra.py`` for examples.
"""

from tests.fake_entra.client import ClientCertificate, FormPost, parse_form_post, pkce_pair
from tests.fake_entra.errors import EntraError
from tests.fake_entra.server import FakeEntra, run_fake_entra
from tests.fake_entra.state import (
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
    REMOVE,
    App,
    AuthCode,
    Logout,
    Tenant,
    User,
)

__all__ = [
    "GRAPH_APP_ID",
    "GRAPH_RESOURCE",
    "REMOVE",
    "App",
    "AuthCode",
    "ClientCertificate",
    "EntraError",
    "FakeEntra",
    "FormPost",
    "Logout",
    "Tenant",
    "User",
    "parse_form_post",
    "pkce_pair",
    "run_fake_entra",
]
