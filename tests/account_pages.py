"""Reading the account-access page (/account/sessions) as a person reads it: which devices,
which sessions on each, their applications, and which one is "This device"."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class ShownSession:
    session_id: str
    ip: str = ""
    applications: str = ""


@dataclass
class ShownDevice:
    label: str = ""
    current: bool = False
    this_device_marker: bool = False
    sessions: list[ShownSession] = field(default_factory=list)

    @property
    def session_ids(self) -> set[str]:
        return {s.session_id for s in self.sessions}


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.devices: list[ShownDevice] = []
        self._capture: str | None = None  # "label", "ip", "applications"
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        testid = a.get("data-testid")
        if testid == "device":
            self.devices.append(ShownDevice(current=a.get("data-current") == "true"))
        elif not self.devices:
            return
        elif tag == "h2" and not self.devices[-1].label:
            self._capture = "label"
        elif testid == "this-device":
            self.devices[-1].this_device_marker = True
            self._capture = None  # the marker is not part of the label
        elif testid == "session":
            self.devices[-1].sessions.append(ShownSession(a.get("data-session-id") or ""))
        elif testid == "session-ip":
            self._capture = "ip"
        elif testid == "session-applications":
            self._capture = "applications"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h2", "dd"):
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is None:
            return
        device = self.devices[-1]
        if self._capture == "label":
            device.label += data
        elif self._capture == "ip":
            device.sessions[-1].ip += data
        else:
            device.sessions[-1].applications += data


def read_devices(page: str) -> list[ShownDevice]:
    reader = _Reader()
    reader.feed(page)
    for device in reader.devices:
        device.label = html.unescape(device.label).strip()
        for s in device.sessions:
            s.ip, s.applications = s.ip.strip(), " ".join(s.applications.split())
    return reader.devices


def shown_session_ids(page: str) -> set[str]:
    return {s for d in read_devices(page) for s in d.session_ids}
