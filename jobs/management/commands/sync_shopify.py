from jobs.management.operation_command import OperationCommand


class Command(OperationCommand):
    operation = "sync_shopify"
    help = ("Write a kind of record to Shopify (customers: loyalty metafields): --all (default), --ids …, "
            "--retry-failed. --wait runs it here with a progress bar.")
