"""Enterprise SSO with Microsoft Entra ID: connections (tenant + app registration per
organization), tenant metadata and keys, the sign-in flow, and identity linking."""
