"""Production takes real store purchases only; each store's settings are complete or refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.settings import Settings

PRODUCTION: dict[str, Any] = {
    "env": "production",
    "jwt_secret": "a-long-random-production-secret-0123456789",
    "stripe_secret_key": "sk_test_x",
    "stripe_webhook_secret": "whsec_x",
}
APPLE: dict[str, Any] = {
    "app_store_bundle_id": "com.creditgate.app",
    "app_store_app_apple_id": 1234567890,
    "app_store_root_certificates": (Path("AppleRootCA-G3.cer"),),
}


@pytest.mark.parametrize("environment", ["SANDBOX", "XCODE", "LOCAL_TESTING"])
def test_production_refuses_an_app_store_environment_other_than_production(
    environment: str,
) -> None:
    with pytest.raises(ValidationError, match=f"APP_STORE_ENVIRONMENT={environment}"):
        Settings(_env_file=None, **PRODUCTION, **APPLE, app_store_environment=environment)


def test_production_refuses_to_switch_off_online_revocation_checks() -> None:
    with pytest.raises(ValidationError, match="ONLINE_CHECKS=false"):
        Settings(
            _env_file=None,
            **PRODUCTION,
            **APPLE,
            app_store_environment="PRODUCTION",
            app_store_online_checks=False,
        )


def test_online_checks_are_on_in_production_and_off_elsewhere_by_default() -> None:
    production = Settings(_env_file=None, **PRODUCTION, **APPLE, app_store_environment="PRODUCTION")
    assert production.app_store_online_checks_enabled
    assert not Settings(_env_file=None, **APPLE).app_store_online_checks_enabled


def test_production_needs_the_apps_apple_id() -> None:
    with pytest.raises(ValidationError, match="APP_APPLE_ID"):
        Settings(
            _env_file=None,
            **PRODUCTION,
            **{**APPLE, "app_store_app_apple_id": None},
            app_store_environment="PRODUCTION",
        )


def test_the_app_store_needs_root_certificates() -> None:
    with pytest.raises(ValidationError, match="ROOT_CERTIFICATES"):
        Settings(_env_file=None, app_store_bundle_id="com.creditgate.app")


def test_production_refuses_google_play_test_purchases() -> None:
    with pytest.raises(ValidationError, match="TEST_PURCHASES=true"):
        Settings(_env_file=None, **PRODUCTION, google_play_test_purchases=True)
    assert not Settings(_env_file=None, **PRODUCTION).google_play_test_purchases_accepted
    assert Settings(_env_file=None).google_play_test_purchases_accepted


def test_google_play_needs_a_service_account_file() -> None:
    with pytest.raises(ValidationError, match="SERVICE_ACCOUNT_FILE"):
        Settings(_env_file=None, google_play_package_name="com.creditgate.app")


def test_store_products_map_store_product_ids_to_packs() -> None:
    settings = Settings(
        _env_file=None,
        store_products="APP_STORE:com.example.p500=pack-500, GOOGLE_PLAY:p500=pack-500",
    )
    assert settings.store_product_overrides == {
        ("APP_STORE", "com.example.p500"): "pack-500",
        ("GOOGLE_PLAY", "p500"): "pack-500",
    }
    with pytest.raises(ValidationError, match="STORE:productId=packId"):
        Settings(_env_file=None, store_products="STEAM:x=pack-500")
