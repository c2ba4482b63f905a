"""Logging, metrics and the redaction that keeps secrets and personal data out of them."""

from crm_bridge.observability.logging import get_logger
from crm_bridge.observability.redaction import mask_email, mask_name, mask_phone, redact, register_secret

__all__ = ["get_logger", "mask_email", "mask_name", "mask_phone", "redact", "register_secret"]
