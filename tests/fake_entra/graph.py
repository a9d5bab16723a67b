"""Microsoft Graph, the little of it idp uses: ``GET /v1.0/organization`` (the tenant's verified
domains) and ``GET /oidc/userinfo``, behind Graph's bearer-token checks and error envelope."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.wrappers import Response

from tests.fake_entra import jose
from tests.fake_entra.common import install_common
from tests.fake_entra.errors import graph_error
from tests.fake_entra.state import GRAPH_RESOURCES, Tenant

if TYPE_CHECKING:
    from tests.fake_entra.server import FakeEntra

# Application permissions, and delegated scopes, that may read the organization resource.
ORGANIZATION_ROLES = {"Organization.Read.All", "Organization.ReadWrite.All",
                      "Directory.Read.All", "Directory.ReadWrite.All"}
ORGANIZATION_SCOPES = ORGANIZATION_ROLES | {"User.Read"}


class GraphRefusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def make_graph_app(fake: FakeEntra) -> Flask:
    app = Flask("fake_entra_graph")
    install_common(app, fake, "graph")

    def refuse(exc: GraphRefusal) -> Response:
        return graph_error(exc.status, exc.code, exc.message,
                           request.headers.get("client-request-id"))

    def principal() -> tuple[Tenant, dict[str, Any]]:
        """The token's tenant and claims, checked as Graph would."""
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            raise GraphRefusal(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            parsed = jose.parse(auth[7:].strip())
        except jose.JoseError as exc:
            raise GraphRefusal(401, "InvalidAuthenticationToken",
                               "CompactToken parsing failed with error code: 80049217") from exc
        key = fake.published_key(parsed.header.get("kid"))
        try:
            if key is None or parsed.header.get("alg") != "RS256":
                raise jose.JoseError("unknown key")
            jose.verify_rsa(parsed, key.public_key)
        except jose.JoseError as exc:
            raise GraphRefusal(401, "InvalidAuthenticationToken",
                               "Access token validation failure.") from exc
        claims = parsed.claims
        if claims.get("aud") not in GRAPH_RESOURCES:
            raise GraphRefusal(401, "InvalidAuthenticationToken",
                               "Access token validation failure. Invalid audience.")
        exp, nbf, now = claims.get("exp"), claims.get("nbf", 0), fake.now()
        if not isinstance(exp, int) or not isinstance(nbf, int) or not nbf - 300 <= now < exp:
            raise GraphRefusal(401, "InvalidAuthenticationToken",
                               "Lifetime validation failed, the token is expired.")
        tenant = fake.resolve_tenant(str(claims.get("tid", "")))
        if tenant is None or claims.get("iss") != f"https://sts.windows.net/{tenant.tenant_id}/":
            raise GraphRefusal(401, "InvalidAuthenticationToken",
                               "Access token validation failure. Invalid issuer.")
        return tenant, claims

    def allowed(claims: dict[str, Any], roles: set[str], scopes: set[str]) -> bool:
        if claims.get("idtyp") == "app":
            return bool(roles & set(claims.get("roles") or []))
        return bool(scopes & set(str(claims.get("scp", "")).split()))

    def ok(body: dict[str, Any]) -> Response:
        return Response(json.dumps(body), content_type=(
            "application/json;odata.metadata=minimal;odata.streaming=true;"
            "IEEE754Compatible=false;charset=utf-8"))

    @app.get("/v1.0/organization")
    def organization() -> Response:
        try:
            tenant, claims = principal()
            if not allowed(claims, ORGANIZATION_ROLES, ORGANIZATION_SCOPES):
                raise GraphRefusal(403, "Authorization_RequestDenied",
                                   "Insufficient privileges to complete the operation.")
        except GraphRefusal as exc:
            return refuse(exc)
        org = tenant.organization()
        select = request.args.get("$select")
        if select:
            wanted = [s.strip() for s in select.split(",") if s.strip()]
            unknown = [s for s in wanted if s not in org]
            if unknown:
                return refuse(GraphRefusal(
                    400, "BadRequest",
                    f"Could not find a property named '{unknown[0]}' on type "
                    "'microsoft.graph.organization'."))
            org = {k: org[k] for k in wanted}
        return ok({"@odata.context": f"{fake.graph_url}/v1.0/$metadata#organization",
                   "value": [org]})

    @app.route("/oidc/userinfo", methods=["GET", "POST"])
    def userinfo() -> Response:
        try:
            tenant, claims = principal()
            if claims.get("idtyp") != "user" or not allowed(claims, set(), {"openid"}):
                raise GraphRefusal(401, "InvalidAuthenticationToken",
                                   "Access token validation failure.")
        except GraphRefusal as exc:
            return refuse(exc)
        user = fake.user(tenant.tenant_id, str(claims["oid"]))
        scopes = str(claims.get("scp", "")).split()
        body: dict[str, Any] = {
            "sub": fake.sub_for(tenant.tenant_id, user.oid, str(claims["appid"]))}
        if "profile" in scopes:
            given, _, family = user.name.partition(" ")
            body.update(name=user.name, family_name=family, given_name=given,
                        picture=f"{fake.graph_url}/v1.0/me/photo/$value")
        if "email" in scopes and user.email:
            body["email"] = user.email
        return ok(body)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        segment = request.path.rstrip("/").rsplit("/", 1)[-1]
        return refuse(GraphRefusal(400, "BadRequest",
                                   f"Resource not found for the segment '{segment}'."))

    return app
