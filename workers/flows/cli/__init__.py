"""Command-line interfaces: `flows` (platform) and `emop` (meters)."""
