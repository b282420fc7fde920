"""Reading and writing signals (images)."""
