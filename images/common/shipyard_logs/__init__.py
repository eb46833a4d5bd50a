"""shipyard's log shipping: a fluentd-style tail agent, a Forward Protocol collector,
an S3 uploader and a daily report (docs/architecture.md, decision 6)."""
