"""Reports people read: SQL in ``sql/*.sql`` run on ClickHouse, rendered as CSV and HTML."""
