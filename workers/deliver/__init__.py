"""The response deliverer (`dccgate worker deliver`): every answer on `dcc.user.responses`
POSTed as a DUIS sr:Response to its User's response_url, in order per User, retried with
backoff, never lost (docs/duis-ingress.md, "Responses pushed to Users")."""

from workers.deliver.errors import DeliverError, DeliverySettingsError
from workers.deliver.ledger import OffsetLedger
from workers.deliver.policy import RetryPolicy, backoff_s, give_up_now, retry_delay_s
from workers.deliver.service import DeliverService, build_deliver, retry_policy

__all__ = [
    "DeliverError",
    "DeliverService",
    "DeliverySettingsError",
    "OffsetLedger",
    "RetryPolicy",
    "backoff_s",
    "build_deliver",
    "give_up_now",
    "retry_delay_s",
    "retry_policy",
]
