"""De-identification of clinical text (HIPAA Safe Harbor)."""
