"""The sync side of the products admin: actions on product mappings (sync selected / all / retry failed) and the
Nhanh webhook deliveries. ``ProductMappingAdmin`` (products/admin.py) mixes ``ProductSyncAdminMixin`` in."""


class ProductSyncAdminMixin:
    pass
