"""Recipes, provenance and reference results of the zoo's models, one TOML file per study."""
