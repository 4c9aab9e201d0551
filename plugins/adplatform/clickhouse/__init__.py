"""ClickHouse: one client from one DSN, versioned migrations, and the idempotent Gold publish."""
