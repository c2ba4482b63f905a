"""crm-bridge shared layer: domain models, CRM providers and the code every Lambda shares."""
