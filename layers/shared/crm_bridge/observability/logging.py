"""The one logger every function uses: Powertools' structured JSON, scrubbed on the way out."""

from __future__ import annotations

import logging
import os
from functools import cache

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

from crm_bridge.observability.redaction import redact

SERVICE_NAME = "crm-bridge"
# Libraries that may log URLs (the Bitrix webhook URL carries its token) or request details.
_THIRD_PARTY_LOGGERS = frozenset({"httpx", "httpcore", "botocore", "urllib3"})


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter whose output never carries secrets or personal data."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


@cache
def get_logger() -> Logger:
    logger = Logger(
        service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAME),
        logger_formatter=RedactingFormatter(),
    )
    for name in _THIRD_PARTY_LOGGERS:
        logging.getLogger(name)  # register it, so that the copy below reaches it
    # Their records go through our formatter too, and only from WARNING up: httpx logs every
    # request URL at INFO.
    copy_config_to_registered_loggers(
        source_logger=logger, log_level=logging.WARNING, include=set(_THIRD_PARTY_LOGGERS)
    )
    return logger
