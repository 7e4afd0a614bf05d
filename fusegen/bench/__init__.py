"""Firmware build, serial link and benchmark runner (host side); see firmware/README.md."""
