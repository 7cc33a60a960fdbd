"""Delivery channels. One module per channel behind `Channel` (base.py); `CHANNELS` picks one by name."""
