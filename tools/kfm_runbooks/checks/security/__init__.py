"""Security checks: access logs, layer policy, exposed secrets, supply chain, wheels."""
