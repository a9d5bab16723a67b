"""Properties of the two redirect rules: where a person is sent after signing in (same origin
only), and which redirect URIs a client may use (registered byte for byte, RFC 9700 §4.1.3)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idp.models.clients import Client
from idp.provider.clients import ClientError, RegisteredClient, validate_redirect_uri
from idp.security.redirects import safe_next

FAST = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],  # a busy CI machine is not a bug
)
ORIGIN = "https://id.example.com"

# Text biased towards what open-redirect payloads are made of.
TRICKY = st.text(alphabet=st.sampled_from("/\\:@.?#%&=\t\n\r \x00\x7fhtpsevil.com"), max_size=30)
anything = st.one_of(st.text(max_size=60), TRICKY, st.builds(lambda a, b: a + b, TRICKY, st.text()))


@FAST
@given(target=st.one_of(st.none(), anything))
def test_safe_next_only_ever_returns_a_same_origin_path(target: str | None) -> None:
    result = safe_next(target)
    assert result.startswith("/")
    assert not result.startswith(("//", "/\\"))
    assert "\\" not in result
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in result)
    parts = urlsplit(result)
    assert not parts.scheme and not parts.netloc
    # Resolved by a browser against idp's own address, it stays on idp.
    assert urlsplit(urljoin(ORIGIN + "/login", result)).netloc == "id.example.com"


path_segment = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="/\\?#%"),
    min_size=1,
    max_size=12,
)


@FAST
@given(
    segments=st.lists(path_segment, min_size=1, max_size=4),
    query=st.text(alphabet=st.sampled_from("abc=&12"), max_size=12),
)
def test_safe_next_keeps_every_plain_same_origin_path(segments: list[str], query: str) -> None:
    """The rule is not "always the default": ordinary paths survive unchanged."""
    target = "/" + "/".join(segments) + ("?" + query if query else "")
    assert safe_next(target) == target


REGISTERED = "https://rp.example/cb"


def registered_client(uri: str = REGISTERED) -> RegisteredClient:
    return RegisteredClient(Client(client_id="c", name="RP", redirect_uris=[uri]))


def mutations(uri: str) -> st.SearchStrategy[str]:
    """Near misses: one character inserted, removed or replaced, case changed, suffixes."""
    i = st.integers(min_value=0, max_value=len(uri))
    char = st.characters(min_codepoint=0x20, max_codepoint=0x2FF)
    return st.one_of(
        st.builds(lambda n, c: uri[:n] + c + uri[n:], i, char),
        st.builds(lambda n: uri[:n] + uri[n + 1 :], st.integers(0, len(uri) - 1)),
        st.builds(lambda n, c: uri[:n] + c + uri[n + 1 :], st.integers(0, len(uri) - 1), char),
        st.just(uri.upper()),
        st.builds(lambda s: uri + s, st.text(min_size=1, max_size=10)),
    )


@FAST
@given(candidate=st.one_of(mutations(REGISTERED), st.text(max_size=40)))
def test_only_the_registered_redirect_uri_byte_for_byte_is_accepted(candidate: str) -> None:
    client = registered_client()
    assert client.check_redirect_uri(candidate) == (candidate == REGISTERED)
    assert client.check_redirect_uri(REGISTERED)


@FAST
@given(uri=st.one_of(st.text(max_size=60), mutations("https://rp.example:8443/cb?x=1"), TRICKY))
def test_registering_a_redirect_uri_either_keeps_it_exactly_or_says_why(uri: str) -> None:
    """validate_redirect_uri never rewrites a URI (so matching stays byte for byte) and
    refuses only with ClientError, which the command line prints as one line."""
    try:
        kept = validate_redirect_uri(uri)
    except ClientError as exc:
        assert "redirect URI" in str(exc)
    else:
        assert kept == uri
        parts = urlsplit(uri)
        assert parts.scheme in ("https", "http") and parts.hostname and not parts.fragment


@pytest.mark.parametrize("uri", ["https://[::1", "http://[x]/cb", "https://a.example:99999999/"])
def test_a_malformed_authority_is_refused_with_a_reason(uri: str) -> None:
    with pytest.raises(ClientError):
        validate_redirect_uri(uri)
