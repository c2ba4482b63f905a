"""Generate docs/openapi.json from the API functions' own routes and models (never by hand).

    python -m infra.openapi            # rewrite docs/openapi.json
    python -m infra.openapi --check    # exit 1 when the committed document is stale

Each function has its own resolver; Powertools' OpenAPIMerge loads every ``functions/*/*_api.py``
and merges their schemas. Importing a handler reads its settings, so placeholder values are set for
the duration (nothing is called).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from unittest import mock

from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge

ROOT = Path(__file__).parents[1]
DOCUMENT = ROOT / "docs" / "openapi.json"
_PLACEHOLDER_SETTINGS = {
    "CRM_QUEUE_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/crm-operations",
    "CRM_DLQ_URL": "https://sqs.eu-central-1.amazonaws.com/123456789012/crm-operations-dlq",
    "REDIRECT_TELEGRAM_URL": "https://t.me/agency_bot",
    "REDIRECT_WHATSAPP_NUMBER": "905321112233",
    "REDIRECT_INSTAGRAM_URL": "https://www.instagram.com/agency",
    "AWS_DEFAULT_REGION": "eu-central-1",
}


def generate() -> str:
    merge = OpenAPIMerge(
        title="crm-bridge API",
        version="1.0.0",
        description="Website applications, messenger clicks and partner redirects into EspoCRM or Bitrix24.",
    )
    with mock.patch.dict(os.environ, _PLACEHOLDER_SETTINGS):
        for handler in sorted((ROOT / "functions").glob("*/*_api.py")):
            merge.add_file(handler, resolver_name="app")
        schema = json.loads(merge.get_openapi_json_schema())
    return json.dumps(schema, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    document = generate()
    if "--check" in sys.argv[1:]:
        if not DOCUMENT.exists() or DOCUMENT.read_text(encoding="utf-8") != document:
            print(f"{DOCUMENT.relative_to(ROOT)} is stale: run python -m infra.openapi", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(document, encoding="utf-8")
    print(f"wrote {DOCUMENT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
