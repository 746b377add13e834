"""The job types the customers app registers (labels in ``LABELS``)."""

from enum import StrEnum


class CustomerJobType(StrEnum):
    PULL_NHANH_CUSTOMERS = "PULL_NHANH_CUSTOMERS"
    PULL_SHOPIFY_CUSTOMERS = "PULL_SHOPIFY_CUSTOMERS"
    AUTO_MATCH_CUSTOMERS = "AUTO_MATCH_CUSTOMERS"
    CUSTOMER_SYNC = "CUSTOMER_SYNC"
    RETRY_FAILED_SYNC = "RETRY_FAILED_SYNC"
