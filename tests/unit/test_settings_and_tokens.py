"""Settings refuse a guessable secret in production; the CLI prints verifiable tokens."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from app.auth import InvalidToken, Principal, decode_token, issue_token
from app.settings import DEVELOPMENT_SECRET, Settings

SECRET = "a-long-random-production-secret-0123456789"


@pytest.mark.parametrize("secret", [DEVELOPMENT_SECRET, "short"])
def test_production_refuses_to_start_without_a_real_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(_env_file=None, env="production", jwt_secret=secret)


STRIPE: dict[str, Any] = {"stripe_secret_key": "sk_test_x", "stripe_webhook_secret": "whsec_x"}


def test_production_starts_with_a_real_secret() -> None:
    settings = Settings(_env_file=None, env="production", jwt_secret=SECRET, **STRIPE)
    assert settings.is_production
    assert settings.payments == "stripe"


def test_production_refuses_the_sandbox_payment_provider() -> None:
    with pytest.raises(ValidationError, match="refuses the sandbox"):
        Settings(
            _env_file=None,
            env="production",
            jwt_secret=SECRET,
            payment_provider="sandbox",
            **STRIPE,
        )


@pytest.mark.parametrize("missing", ["stripe_secret_key", "stripe_webhook_secret"])
def test_production_refuses_to_start_without_the_stripe_secrets(missing: str) -> None:
    given = {k: v for k, v in STRIPE.items() if k != missing}
    with pytest.raises(ValidationError, match="STRIPE_SECRET_KEY and CREDITGATE_STRIPE_WEBHOOK"):
        Settings(_env_file=None, env="production", jwt_secret=SECRET, **given)


def test_outside_production_the_sandbox_takes_the_payments() -> None:
    assert Settings(_env_file=None).payments == "sandbox"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITGATE_PRO_MONTHLY_CREDITS", "5000")
    assert Settings(_env_file=None).pro_monthly_credits == 5000


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--account", "acc-1"], Principal("user", "acc-1")),
        (["--role", "service"], Principal("service", subject="service")),
        (
            ["--role", "service", "--subject", "support:ada"],
            Principal("service", subject="support:ada"),
        ),
    ],
)
def test_the_token_command_prints_a_token_signed_with_the_configured_secret(
    args: list[str], expected: Principal
) -> None:
    env = {"CREDITGATE_JWT_SECRET": SECRET, "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "token", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert decode_token(out, SECRET, datetime.now(UTC)) == expected
    with pytest.raises(InvalidToken):
        decode_token(out, "another-secret-of-sufficient-length!!", datetime.now(UTC))


def test_the_token_command_needs_an_account_or_the_service_role() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "token"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2


def test_tokens_expire_by_the_clock_they_are_checked_against() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    token = issue_token(SECRET, role="user", account_id="a", now=now, ttl=timedelta(minutes=1))
    assert decode_token(token, SECRET, now + timedelta(seconds=59)).account_id == "a"
    with pytest.raises(InvalidToken, match="expired"):
        decode_token(token, SECRET, now + timedelta(minutes=1))
