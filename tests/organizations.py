"""Shared by the organization tests: seeding organizations with members, signing in as one of
them, and posting forms with a valid CSRF token."""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from idp.models import Membership, Organization, Role
from idp.runtime import Runtime
from tests.helpers import create_user, csrf_token, sign_in


@dataclass
class SeededOrg:
    id: str
    name: str
    users: dict[str, str] = field(default_factory=dict)  # label -> user id


def seed_org(runtime: Runtime, name: str, members: dict[str, tuple[str, Role]]) -> SeededOrg:
    """An organization with ``members`` (label -> (email, role)); accounts made as needed."""
    org = SeededOrg(id="", name=name)
    for label, (email, role) in members.items():
        with runtime.session_factory() as db:
            existing = db.scalar(select(Organization).where(Organization.name == name))
        if existing is None:
            user = create_user(runtime, email, organization=name, role=role, first_name=label)
        else:
            user = create_user(runtime, email, first_name=label)
            with runtime.session_factory() as db:
                db.add(Membership(user_id=user.id, organization_id=existing.id, role=role))
                db.commit()
        org.users[label] = user.id
    with runtime.session_factory() as db:
        found = db.scalar(select(Organization.id).where(Organization.name == name))
    assert found is not None
    org.id = found
    return org


def signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert sign_in(client, email).status_code == 303
    return client


def token_of(client: FlaskClient) -> str:
    return csrf_token(client.get("/organizations").get_data(as_text=True))


def post(client: FlaskClient, path: str, **data: object) -> TestResponse:
    return client.post(path, data={"csrf_token": token_of(client), **data})


def role_in(runtime: Runtime, org_id: str, user_id: str) -> Role | None:
    with runtime.session_factory() as db:
        return db.scalar(
            select(Membership.role).where(
                Membership.organization_id == org_id, Membership.user_id == user_id
            )
        )
