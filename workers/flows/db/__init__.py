"""Database access: where the database is, connecting, migrations."""
