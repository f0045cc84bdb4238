"""Bearer-token auth of mutating endpoints (fabray.serve.auth)."""

from __future__ import annotations

import pytest

from fabray.serve.auth import AuthError, check_bearer, load_token

TOKEN = "s3cret-token-0123456789"


def test_token_comes_from_the_file_before_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FABRAY_API_TOKEN", "from-the-environment-123")
    assert load_token() == "from-the-environment-123"
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert load_token(token_file=str(path)) == TOKEN
    assert load_token(token_file=str(tmp_path / "missing")) is None


def test_no_token_or_a_short_one_disables_mutations(monkeypatch):
    monkeypatch.delenv("FABRAY_API_TOKEN", raising=False)
    assert load_token() is None
    monkeypatch.setenv("FABRAY_API_TOKEN", "short")
    assert load_token() is None


def test_no_configured_token_is_403_saying_how_to_enable():
    with pytest.raises(AuthError) as err:
        check_bearer(f"Bearer {TOKEN}", None)
    assert err.value.status == 403 and "FABRAY_API_TOKEN" in err.value.message


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", f"Token {TOKEN}", "Bearer wrong-token-0123456789"])
def test_missing_or_wrong_token_is_401(header):
    with pytest.raises(AuthError) as err:
        check_bearer(header, TOKEN)
    assert err.value.status == 401


def test_the_right_token_passes():
    check_bearer(f"Bearer {TOKEN}", TOKEN)
    check_bearer(f"bearer  {TOKEN} ", TOKEN)
