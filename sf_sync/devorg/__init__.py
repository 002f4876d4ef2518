"""A local Salesforce stand-in ("dev org"): REST, auth, Bulk API 2.0 and CDC events to Kafka.

Salesforce itself cannot be reached from here; this package behaves like it as documented, over
real HTTPS, so simple-salesforce and the pipeline talk to it unchanged. See docs/devorg.md.
"""
