"""Security services: passwords, sessions and devices, CSRF, headers, safe redirects."""
