"""EspoCRM for crm-bridge: the compose stack, its Caddyfile and the provisioning command."""
