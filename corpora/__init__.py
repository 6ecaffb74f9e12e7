"""Text written for rnncli: the default training corpus (installed as package data)."""
