"""What every use case needs, built once per process by the app factory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.clock import Clock
from app.domain.plans import PlanCatalog
from app.domain.purchases import ProviderName
from app.payments.port import PaymentProvider, StoreProvider
from app.payments.sandbox import SandboxProvider
from app.persistence.unit_of_work import Database
from app.services.catalog import TariffCache


@dataclass(slots=True)
class StoreSweep:
    """When each store's voided purchases were last pulled, in this process."""

    every: timedelta = timedelta(hours=1)
    # How far back each pull looks: Google lists voided purchases for 30 days.
    lookback: timedelta = timedelta(days=3)
    pulled_at: dict[ProviderName, datetime] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Services:
    db: Database
    clock: Clock
    plans: PlanCatalog
    # A generation no worker finished within this is failed and its hold released.
    generation_timeout: timedelta = field(default=timedelta(minutes=15))
    # Who takes the money for packs; the sandbox confirms at once.
    payments: PaymentProvider = field(default_factory=SandboxProvider)
    # Purchases PENDING longer than this are re-fetched from the provider by the sweep.
    payment_reconcile_after: timedelta = field(default=timedelta(minutes=10))
    # The tariffs, read once per process and refreshed after a few seconds.
    tariffs: TariffCache = field(default_factory=TariffCache)
    # The app stores this gateway sells packs through (none unless configured).
    stores: Mapping[ProviderName, StoreProvider] = field(default_factory=dict)
    # Settings' overrides of the catalog's store product ids: (store, product id) -> pack id.
    store_products: Mapping[tuple[str, str], str] = field(default_factory=dict)
    store_sweep: StoreSweep = field(default_factory=StoreSweep)
