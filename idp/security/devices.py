"""Devices: the browsers a user signs in from, recognised by a long-lived random cookie.

The cookie holds a random browser key; only its SHA-256 is stored, per user. The User-Agent is
parsed with ua-parser (the maintained uap-core rules) into browser and OS families.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session
from ua_parser import parse

from idp.models import Device

DEVICE_COOKIE = "idp_device"
DEVICE_COOKIE_MAX_AGE = 400 * 24 * 3600  # the longest lifetime browsers honour (RFC 6265bis)


@dataclass(frozen=True)
class ClientInfo:
    """What a request tells about the browser making it."""

    ip: str
    user_agent: str
    browser_key: str | None = None


def new_browser_key() -> str:
    return secrets.token_urlsafe(32)


def hash_key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def describe_user_agent(user_agent: str) -> tuple[str, str]:
    """(browser, OS) such as ("Firefox 128", "Windows 10"); empty strings when unknown."""
    result = parse(user_agent[:512])
    browser = os_name = ""
    if result.user_agent and result.user_agent.family != "Other":
        browser = " ".join(p for p in (result.user_agent.family, result.user_agent.major) if p)
    if result.os and result.os.family != "Other":
        os_name = " ".join(p for p in (result.os.family, result.os.major) if p)
    return browser, os_name


def identify_device(
    db: Session, user_id: str, client: ClientInfo, browser_key: str, now: datetime
) -> tuple[Device, bool]:
    """The user's device for ``browser_key`` (created on first sight, its last sight updated),
    and whether it is new."""
    key_hash = hash_key(browser_key)
    device = db.scalar(
        select(Device).where(Device.user_id == user_id, Device.browser_key_hash == key_hash)
    )
    browser, os_name = describe_user_agent(client.user_agent)
    created = device is None
    if device is None:
        device = Device(
            user_id=user_id, browser_key_hash=key_hash, first_ip=client.ip, first_seen_at=now
        )
        db.add(device)
    device.user_agent = client.user_agent[:512]
    device.browser, device.os = browser[:100], os_name[:100]
    device.last_ip = client.ip
    device.last_seen_at = now
    return device, created
