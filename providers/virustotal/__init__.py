"""VirusTotal API v3: group and user API usage (per day and endpoint) and quotas."""
