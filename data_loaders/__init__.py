"""Shared data containers, readers for the real formats and simulators that write them."""
