"""AWS list prices for eu-central-1 (Frankfurt, samconfig.toml's region): the one place to update them.

Transcribed on 2026-12-07 from the public pricing pages named in ``SOURCES``, as last known (2025
list prices; this machine has no internet, so they were not re-read online). On-demand prices, no
free tier (Lambda's 1M requests and 400,000 GB-s, SQS's 1M requests, KMS's 20,000 requests and
CloudWatch Logs' 5 GB a month are always free; API Gateway's 1M HTTP API calls only in the first
year): what the stack costs once the free tier is used up elsewhere in the account.
"""

from __future__ import annotations

from dataclasses import dataclass

TRANSCRIBED = "2026-12-07"
REGION = "eu-central-1"
SOURCES = {
    "lambda": "https://aws.amazon.com/lambda/pricing/ (Europe (Frankfurt), Arm)",
    "apigateway": "https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, first 300 million)",
    "sqs": "https://aws.amazon.com/sqs/pricing/ (standard queue, first 100 billion requests)",
    "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (Standard table class, after Nov 2024)",
    "kms": "https://aws.amazon.com/kms/pricing/",
    "cloudwatch": "https://aws.amazon.com/cloudwatch/pricing/ (Logs, Standard class ingestion)",
}
MILLION = 1_000_000


@dataclass(frozen=True)
class Prices:
    """US dollars. Per request or unit, so that the arithmetic reads as usage x price."""

    lambda_request: float
    lambda_gb_second_arm64: float
    http_api_request: float
    """Each 512 KB of a request is one request: ours are a few KB."""
    sqs_request: float
    """Each 64 KB chunk of a payload is one request: ours are a few KB."""
    dynamodb_write_unit: float
    dynamodb_read_unit: float
    kms_request: float
    logs_ingested_gb: float
    kms_key_month: float
    """Fixed: the recovery key, whatever the traffic."""


EU_CENTRAL_1 = Prices(
    lambda_request=0.20 / MILLION,
    lambda_gb_second_arm64=0.0000133334,
    http_api_request=1.20 / MILLION,
    sqs_request=0.40 / MILLION,
    dynamodb_write_unit=0.7625 / MILLION,
    dynamodb_read_unit=0.1525 / MILLION,
    kms_request=0.03 / 10_000,
    logs_ingested_gb=0.63,
    kms_key_month=1.00,
)
