"""lifecycle: keeps the vendor's 'at least 3 months notice' promise for every lifecycle milestone."""

__version__ = "0.1.0"
