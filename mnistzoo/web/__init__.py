"""The page ``mnistzoo serve`` serves (kept in the package, so it works offline)."""
