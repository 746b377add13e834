from jobs.management.operation_command import OperationCommand


class Command(OperationCommand):
    operation = "automatch"
    help = "Auto-match a kind of record across systems (customers: Nhanh ↔ Shopify by phone). --dry-run reports."
