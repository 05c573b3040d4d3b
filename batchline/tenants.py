"""FOLIO tenants: which names exist, and where in object storage each one may read and write.

A tenant's instances, and the batches, results, error files and events that concern them,
belong to it alone; requests name their tenant with ``X-Okapi-Tenant`` (else the default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A tenant becomes part of a topic name ({env}.{tenant}.inventory.instance) and of storage
# keys: FOLIO's tenant ids are letters, digits and '_'.
TENANT_PATTERN = r"^[A-Za-z0-9_]{1,63}$"
_TENANT = re.compile(TENANT_PATTERN)
TENANT_PLACEHOLDER = "{tenant}"


class TenantConfigError(ValueError):
    """BATCHLINE_TENANTS or BATCHLINE_STORAGE_TENANT_PREFIX cannot be used."""


def is_tenant_name(name: str) -> bool:
    return bool(_TENANT.match(name))


@dataclass(frozen=True)
class Tenants:
    default: str
    # None: any well-formed name.
    allowed: frozenset[str] | None = None
    # e.g. "{tenant}/": a tenant's recordsFileName (and so its error files) must start so.
    storage_prefix: str | None = None

    @classmethod
    def configure(cls, default: str, allowed: str, storage_prefix: str | None) -> Tenants:
        names = frozenset(name for name in re.split(r"[\s,]+", allowed.strip()) if name)
        for name in sorted(names | {default}):
            if not is_tenant_name(name):
                raise TenantConfigError(f"tenant {name!r}: use 1-63 letters, digits and '_'")
        if names and default not in names:
            raise TenantConfigError(
                f"the default tenant {default!r} is not among BATCHLINE_TENANTS"
            )
        if storage_prefix is not None and TENANT_PLACEHOLDER not in storage_prefix:
            raise TenantConfigError(
                f"BATCHLINE_STORAGE_TENANT_PREFIX must contain {TENANT_PLACEHOLDER}, as in"
                f" {TENANT_PLACEHOLDER}/"
            )
        return cls(default, names or None, storage_prefix or None)

    def refusal(self, tenant: str) -> str | None:
        """Why ``tenant`` is not served; None when it is."""
        if not is_tenant_name(tenant):
            return "must be letters, digits and '_'"
        if self.allowed is not None and tenant not in self.allowed:
            return "is not a tenant of this service"
        return None

    def key_prefix(self, tenant: str) -> str | None:
        """The storage prefix ``tenant``'s keys must start with; None: no confinement."""
        if self.storage_prefix is None:
            return None
        return self.storage_prefix.replace(TENANT_PLACEHOLDER, tenant)
